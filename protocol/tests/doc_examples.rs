//! The worked hex examples of `docs/protocol.md`, generated from the encoder. The test fails if
//! the document does not show them exactly (run with `--nocapture` to print them).

use protocol::{Body, ErrorCode, Message};

/// The examples: a title, the message, and the byte sizes of its fields (prefix, type, id
/// flag, [id], data length, then the body's fields) for the spaced rendering.
fn examples() -> Vec<(&'static str, Message, Vec<usize>)> {
    vec![
        (
            "NewChallenge",
            Message { id: None, body: Body::NewChallenge { challenge_hash: [0x11; 32] } },
            vec![4, 1, 1, 4, 32],
        ),
        (
            "ChallengeResponse",
            Message {
                id: None,
                body: Body::ChallengeResponse {
                    challenge_hash: [0x11; 32],
                    quality: [0x22; 32],
                    plot_size: 32,
                },
            },
            vec![4, 1, 1, 4, 32, 32, 1],
        ),
        (
            "RequestProofOfSpace",
            Message { id: Some(0x0102), body: Body::RequestProofOfSpace { quality: [0x22; 32] } },
            vec![4, 1, 1, 2, 4, 32],
        ),
        (
            "Error",
            Message::error(Some(0x0102), ErrorCode::UnknownQuality, "unknown quality"),
            vec![4, 1, 1, 2, 4, 2, 4, 15, 1],
        ),
        (
            "HarvesterHandshake",
            Message { id: None, body: Body::HarvesterHandshake { pool_pubkeys: vec![[0xa1; 48]] } },
            vec![4, 1, 1, 4, 4, 48],
        ),
    ]
}

fn hex_spaced(bytes: &[u8], sizes: &[usize]) -> String {
    assert_eq!(sizes.iter().sum::<usize>(), bytes.len(), "field sizes cover the frame");
    let mut parts = Vec::new();
    let mut at = 0;
    for &n in sizes {
        parts.push(hex::encode(&bytes[at..at + n]));
        at += n;
    }
    parts.join(" ")
}

#[test]
fn docs_show_the_encoder_output() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md is readable");
    let mut missing = Vec::new();
    for (title, message, sizes) in examples() {
        let spaced = hex_spaced(&message.to_frame(), &sizes);
        println!("{title}:\n{spaced}\n");
        if !doc.contains(&spaced) {
            missing.push(title);
        }
    }
    assert!(missing.is_empty(), "docs/protocol.md lacks the examples {missing:?}");
}
