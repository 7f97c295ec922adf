//! Differential test of `plot_format::keys` against the reference implementation (blspy, the
//! library chia-blockchain used for these keys), run at test time through the oracle venv.
//!
//! Python is `test_support::oracle_python()` (`$ORACLE_PYTHON`, else `<workspace>/.venv`);
//! without it the test fails and says to run `scripts/oracle-venv.sh`.

use std::process::Command;

use plot_format::keys::{
    add_public_keys, aggregate_signatures, check_plot_id, derive_child_sk, derive_path,
    is_valid_g1, key_gen, parse_memo, sign_aug, sign_aug_own, verify_aug, G1Bytes, G2Bytes,
    KeyError, PoolKind, SecretKey, FARMER_SK_PATH, G1_IDENTITY, LOCAL_SK_PATH, POOL_SK_PATH,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The oracle. Input: one JSON argument; output: one JSON document on stdout.
/// Every per-case input is derived from the case's seed the same way the Rust side does it.
const ORACLE: &str = r#"
import sys, json, hashlib
from blspy import AugSchemeMPL, PrivateKey, G1Element, G2Element

def h(b): return bytes(b).hex()
def sha(b): return hashlib.sha256(b).digest()
def path(sk, p):
    for i in p:
        sk = AugSchemeMPL.derive_child_sk(sk, i)
    return sk

req = json.loads(sys.argv[1])
out = {"cases": [], "g1": [], "verify": []}

for c in req.get("cases", []):
    seed = bytes.fromhex(c["seed"])
    if "master" in c:
        master = PrivateKey.from_bytes(bytes.fromhex(c["master"]))
    else:
        master = AugSchemeMPL.key_gen(seed)
    wallet = AugSchemeMPL.key_gen(sha(seed + b"wallet"))
    farmer_sk = path(wallet, [12381, 8444, 0, 0])
    pool_sk = path(wallet, [12381, 8444, 1, 0])
    farmer_pk = farmer_sk.get_g1()
    pool_pk = pool_sk.get_g1()
    puzzle_hash = sha(seed + b"puzzle")
    msg = sha(seed + b"msg") + seed
    local_sk = path(master, [12381, 8444, 3, 0])
    local_pk = local_sk.get_g1()

    taproot_sk = AugSchemeMPL.key_gen(
        sha(bytes(local_pk + farmer_pk) + bytes(local_pk) + bytes(farmer_pk)))
    kinds = {}
    for kind in ["og", "contract"]:
        if kind == "og":
            plot_pk = local_pk + farmer_pk
            plot_id = sha(bytes(pool_pk) + bytes(plot_pk))
            memo = bytes(pool_pk) + bytes(farmer_pk) + bytes(master)
        else:
            plot_pk = local_pk + farmer_pk + taproot_sk.get_g1()
            plot_id = sha(puzzle_hash + bytes(plot_pk))
            memo = puzzle_hash + bytes(farmer_pk) + bytes(master)
        local_share = AugSchemeMPL.sign(local_sk, msg, plot_pk)
        farmer_share = AugSchemeMPL.sign(farmer_sk, msg, plot_pk)
        shares = [local_share, farmer_share]
        k = {"plot_pk": h(plot_pk), "plot_id": h(plot_id), "memo": h(memo),
             "local_share": h(local_share), "farmer_share": h(farmer_share)}
        if kind == "contract":
            taproot_share = AugSchemeMPL.sign(taproot_sk, msg, plot_pk)
            shares.append(taproot_share)
            k["taproot_share"] = h(taproot_share)
        agg = AugSchemeMPL.aggregate(shares)
        assert AugSchemeMPL.verify(plot_pk, msg, agg)
        k["aggregate"] = h(agg)
        kinds[kind] = k

    out["cases"].append({
        "master_sk": h(master),
        "children": [h(AugSchemeMPL.derive_child_sk(master, i)) for i in req["child_indices"]],
        "wallet_sk": h(wallet), "farmer_sk": h(farmer_sk), "farmer_pk": h(farmer_pk),
        "pool_pk": h(pool_pk), "puzzle_hash": h(puzzle_hash), "msg": h(msg),
        "local_sk": h(local_sk), "local_pk": h(local_pk), "taproot_sk": h(taproot_sk),
        "plain_sig": h(AugSchemeMPL.sign(local_sk, msg)),
        "og": kinds["og"], "contract": kinds["contract"],
    })

p = 0x1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab
for cand in req.get("g1", []):
    b = bytes.fromhex(cand)
    try:
        G1Element.from_bytes(b)
        valid = True
    except Exception:
        valid = False
    x = int.from_bytes(bytes([b[0] & 0x1f]) + b[1:], "big")
    on_curve = (b[0] & 0xc0) == 0x80 and x < p and pow((x**3 + 4) % p, (p - 1) // 2, p) in (0, 1)
    out["g1"].append({"valid": valid, "on_curve": on_curve})

for v in req.get("verify", []):
    ok = AugSchemeMPL.verify(G1Element.from_bytes(bytes.fromhex(v["pk"])),
                             bytes.fromhex(v["msg"]),
                             G2Element.from_bytes(bytes.fromhex(v["sig"])))
    out["verify"].append(ok)

print(json.dumps(out))
"#;

fn oracle(request: &Value) -> Value {
    let python = test_support::oracle_python();
    let out = Command::new(&python)
        .arg("-c")
        .arg(ORACLE)
        .arg(request.to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {} ({e}): run scripts/oracle-venv.sh", python.display())
        });
    assert!(
        out.status.success(),
        "oracle failed ({}); if blspy is missing run scripts/oracle-venv.sh\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle printed invalid JSON")
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    bytes(v).try_into().expect("wrong length")
}

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn sk_hex(sk: &SecretKey) -> String {
    hex::encode(sk.to_bytes().expose_secret())
}

const CHILD_INDICES: [u32; 5] = [0, 1, 12381, 0x8000_0000, u32::MAX];

struct Case {
    seed: Vec<u8>,
    /// The memo's master key, when not `key_gen(seed)`.
    master: Option<[u8; 32]>,
}

fn seeded(seed: Vec<u8>) -> Case {
    Case { seed, master: None }
}

fn cases() -> Vec<Case> {
    let r_minus_1 =
        hex::decode("73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000000").unwrap();
    let mut v = vec![
        // The seed 0x00..0x1f (a common BLS test-vector seed), other 32-byte seeds, longer ones.
        seeded((0u8..32).collect()),
        seeded(vec![0xff; 32]),
        seeded((0u8..33).collect()),
        seeded((0u8..64).rev().collect()),
        seeded(vec![0x42; 100]),
        // Zero master key (accepted by Chia) and the largest valid one (r - 1).
        Case { seed: vec![0x11; 32], master: Some([0; 32]) },
        Case { seed: vec![0x22; 32], master: Some(r_minus_1.try_into().unwrap()) },
    ];
    v.extend((0u8..4).map(|i| seeded(sha(&[b"keys-oracle", &[i]]).to_vec())));
    v
}

#[test]
fn keys_match_blspy() {
    let cases = cases();
    let request = json!({
        "child_indices": CHILD_INDICES,
        "cases": cases.iter().map(|c| match c.master {
            None => json!({ "seed": hex::encode(&c.seed) }),
            Some(m) => json!({ "seed": hex::encode(&c.seed), "master": hex::encode(m) }),
        }).collect::<Vec<_>>(),
    });
    let answer = oracle(&request);
    let results = answer["cases"].as_array().unwrap();
    assert_eq!(results.len(), cases.len());

    let mut to_verify = Vec::new(); // (pk, msg, sig, expected)
    for (case, py) in cases.iter().zip(results) {
        let what = hex::encode(&case.seed);
        let master = match case.master {
            None => key_gen(&case.seed).unwrap(),
            Some(m) => SecretKey::from_bytes(&m).unwrap(),
        };
        assert_eq!(sk_hex(&master), py["master_sk"], "key_gen, seed {what}");
        for (i, child) in CHILD_INDICES.iter().zip(py["children"].as_array().unwrap()) {
            assert_eq!(sk_hex(&derive_child_sk(&master, *i)), *child, "child {i}, seed {what}");
        }

        // The farmer's and pool's keys, as a wallet derives them.
        let wallet = key_gen(&sha(&[&case.seed, b"wallet"])).unwrap();
        assert_eq!(sk_hex(&wallet), py["wallet_sk"]);
        let farmer_sk = derive_path(&wallet, &FARMER_SK_PATH);
        let pool_pk = derive_path(&wallet, &POOL_SK_PATH).public_key();
        let farmer_pk = farmer_sk.public_key();
        assert_eq!(sk_hex(&farmer_sk), py["farmer_sk"], "farmer sk, seed {what}");
        assert_eq!(hex::encode(farmer_pk), py["farmer_pk"]);
        assert_eq!(hex::encode(pool_pk), py["pool_pk"]);
        let puzzle_hash = sha(&[&case.seed, b"puzzle"]);
        assert_eq!(hex::encode(puzzle_hash), py["puzzle_hash"]);
        let msg = [&sha(&[&case.seed, b"msg"])[..], &case.seed].concat();
        assert_eq!(hex::encode(&msg), py["msg"]);

        let local_sk = derive_path(&master, &LOCAL_SK_PATH);
        assert_eq!(sk_hex(&local_sk), py["local_sk"], "local sk, seed {what}");
        assert_eq!(hex::encode(local_sk.public_key()), py["local_pk"]);

        // Plain AugSchemeMPL signature by the local key, both directions.
        let local_pk: G1Bytes = arr(&py["local_pk"]);
        let plain: G2Bytes = arr(&py["plain_sig"]);
        assert_eq!(sign_aug_own(&local_sk, &msg), plain, "plain sig, seed {what}");
        assert_eq!(sign_aug(&local_sk, &msg, &local_pk), plain);
        assert!(verify_aug(&local_pk, &msg, &plain));
        assert!(!verify_aug(&local_pk, &msg[1..], &plain));
        assert!(!verify_aug(&farmer_pk, &msg, &plain));

        for kind in ["og", "contract"] {
            let k = &py[kind];
            let ctx = format!("{kind}, seed {what}");
            let mut memo = Vec::new();
            let contract = kind == "contract";
            if contract {
                memo.extend_from_slice(&puzzle_hash);
            } else {
                memo.extend_from_slice(&pool_pk);
            }
            memo.extend_from_slice(&farmer_pk);
            memo.extend_from_slice(master.to_bytes().expose_secret());
            assert_eq!(hex::encode(&memo), k["memo"], "{ctx}");

            let parsed = parse_memo(&memo).unwrap();
            assert_eq!(parsed.farmer_public_key, farmer_pk);
            let expected_pool = if contract {
                PoolKind::ContractPuzzleHash(puzzle_hash)
            } else {
                PoolKind::PublicKey(pool_pk)
            };
            assert_eq!(parsed.pool, expected_pool);
            let keys = parsed.derive().unwrap();
            assert_eq!(sk_hex(keys.local_secret_key()), py["local_sk"], "{ctx}");
            assert_eq!(hex::encode(keys.local_public_key()), py["local_pk"], "{ctx}");
            assert_eq!(keys.farmer_public_key(), &farmer_pk);
            assert_eq!(hex::encode(keys.plot_public_key()), k["plot_pk"], "plot pk, {ctx}");
            assert_eq!(hex::encode(keys.plot_id()), k["plot_id"], "plot id, {ctx}");
            let plot_id: [u8; 32] = arr(&k["plot_id"]);
            assert_eq!(check_plot_id(&memo, &plot_id).unwrap().plot_id(), plot_id);
            match keys.taproot_secret_key() {
                Some(t) => {
                    assert!(contract);
                    assert_eq!(sk_hex(t), py["taproot_sk"], "taproot sk, {ctx}");
                }
                None => assert!(!contract),
            }

            let plot_pk: G1Bytes = arr(&k["plot_pk"]);
            let mut pks = vec![local_pk, farmer_pk];
            if let Some(t) = keys.taproot_secret_key() {
                pks.push(t.public_key());
            }
            assert_eq!(add_public_keys(&pks).unwrap(), plot_pk, "{ctx}");

            // Shares signed with the plot pk prepended, and their aggregate.
            let local_share = keys.sign_local_share(&msg);
            assert_eq!(hex::encode(local_share), k["local_share"], "local share, {ctx}");
            let farmer_share = sign_aug(&farmer_sk, &msg, &plot_pk);
            assert_eq!(hex::encode(farmer_share), k["farmer_share"], "{ctx}");
            let mut shares = vec![local_share, farmer_share];
            if let Some(t) = keys.taproot_secret_key() {
                let share = sign_aug(t, &msg, &plot_pk);
                assert_eq!(hex::encode(share), k["taproot_share"], "{ctx}");
                shares.push(share);
            }
            let agg = aggregate_signatures(&shares).unwrap();
            assert_eq!(hex::encode(agg), k["aggregate"], "aggregate, {ctx}");
            let py_agg: G2Bytes = arr(&k["aggregate"]);
            assert!(verify_aug(&plot_pk, &msg, &py_agg), "{ctx}");
            assert!(!verify_aug(&plot_pk, b"another message", &py_agg));
            assert!(!verify_aug(&local_pk, &msg, &py_agg));
            assert!(!verify_aug(&plot_pk, &msg, &local_share), "a share alone");

            // Rust-made signatures over a message the oracle has not signed; blspy checks them.
            let msg2 = [&msg[..], b"|rust"].concat();
            let mut shares2 =
                vec![keys.sign_local_share(&msg2), sign_aug(&farmer_sk, &msg2, &plot_pk)];
            if let Some(t) = keys.taproot_secret_key() {
                shares2.push(sign_aug(t, &msg2, &plot_pk));
            }
            let agg2 = aggregate_signatures(&shares2).unwrap();
            assert!(verify_aug(&plot_pk, &msg2, &agg2));
            to_verify.push((plot_pk, msg2.clone(), agg2, true));
            to_verify.push((plot_pk, msg.clone(), agg2, false));
            to_verify.push((local_pk, msg2.clone(), agg2, false));
            to_verify.push((
                local_pk,
                msg2.clone(),
                sign_aug_own(keys.local_secret_key(), &msg2),
                true,
            ));
            // Missing the last share (farmer's, or taproot's for contract plots): invalid.
            shares2.pop();
            let partial = aggregate_signatures(&shares2).unwrap();
            to_verify.push((plot_pk, msg2, partial, false));
        }
    }

    let request = json!({
        "verify": to_verify.iter().map(|(pk, msg, sig, _)| json!({
            "pk": hex::encode(pk), "msg": hex::encode(msg), "sig": hex::encode(sig),
        })).collect::<Vec<_>>(),
    });
    let answer = oracle(&request);
    let verdicts = answer["verify"].as_array().unwrap();
    assert_eq!(verdicts.len(), to_verify.len());
    for (i, ((pk, msg, sig, expected), py)) in to_verify.iter().zip(verdicts).enumerate() {
        assert_eq!(py.as_bool(), Some(*expected), "blspy verdict {i}");
        assert_eq!(verify_aug(pk, msg, sig), *expected, "verify_aug {i}");
    }
}

/// Candidate G1 encodings, valid and not; blspy says which it accepts.
fn g1_candidates() -> Vec<G1Bytes> {
    let mut v = Vec::new();
    v.push(key_gen(&[3u8; 32]).unwrap().public_key());
    v.push(G1_IDENTITY);
    let mut inf_garbage = G1_IDENTITY;
    inf_garbage[47] = 1;
    v.push(inf_garbage);
    let mut inf_sign = G1_IDENTITY;
    inf_sign[0] = 0xe0;
    v.push(inf_sign);
    v.push([0; 48]);
    let mut uncompressed_flag = key_gen(&[3u8; 32]).unwrap().public_key();
    uncompressed_flag[0] &= 0x7f;
    v.push(uncompressed_flag);
    // Small x with both sign bits: on the curve or not; on-curve ones are almost never in G1.
    for x in 1u8..=12 {
        for flag in [0x80u8, 0xa0] {
            let mut b = [0u8; 48];
            b[0] = flag;
            b[47] = x;
            v.push(b);
        }
    }
    // x = p (non-canonical).
    let p = hex::decode(
        "1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab",
    )
    .unwrap();
    let mut b: G1Bytes = p.try_into().unwrap();
    b[0] |= 0x80;
    v.push(b);
    v
}

#[test]
fn g1_validation_matches_blspy() {
    let candidates = g1_candidates();
    let request = json!({
        "child_indices": [],
        "g1": candidates.iter().map(hex::encode).collect::<Vec<_>>(),
    });
    let answer = oracle(&request);
    let verdicts = answer["g1"].as_array().unwrap();
    assert_eq!(verdicts.len(), candidates.len());
    let mut on_curve_rejected = None;
    for (c, py) in candidates.iter().zip(verdicts) {
        let valid = py["valid"].as_bool().unwrap();
        assert_eq!(is_valid_g1(c), valid, "candidate {}", hex::encode(c));
        if py["on_curve"].as_bool().unwrap() && !valid {
            on_curve_rejected = Some(*c);
        }
    }
    assert!(verdicts.iter().filter(|v| v["valid"] == true).count() >= 2);
    // The subgroup check matters: a point on the curve but outside G1 must be refused.
    let outside = on_curve_rejected.expect("no on-curve, out-of-subgroup candidate");

    // In a memo, such a point (and every other rejected encoding) is a BadPoint.
    let good = parse_memo_parts(&candidates[0], &candidates[0], true);
    assert!(parse_memo(&good).is_ok());
    for bad in candidates.iter().zip(verdicts).filter(|(_, py)| py["valid"] == false) {
        let memo = parse_memo_parts(bad.0, &candidates[0], true);
        assert_eq!(parse_memo(&memo).unwrap_err(), KeyError::BadPoint { field: "pool public key" });
        let memo = parse_memo_parts(&candidates[0], bad.0, false);
        assert_eq!(
            parse_memo(&memo).unwrap_err(),
            KeyError::BadPoint { field: "farmer public key" }
        );
    }
    assert_eq!(
        add_public_keys(&[candidates[0], outside]).unwrap_err(),
        KeyError::BadPublicKey { index: 1 }
    );
    assert!(!verify_aug(&outside, b"m", &[0xc0; 96]));
    assert_eq!(
        aggregate_signatures(&[[0u8; 96]]).unwrap_err(),
        KeyError::BadSignature { index: 0 }
    );
}

fn parse_memo_parts(pool: &G1Bytes, farmer: &G1Bytes, og: bool) -> Vec<u8> {
    let mut memo = Vec::new();
    if og {
        memo.extend_from_slice(pool);
    } else {
        memo.extend_from_slice(&[7u8; 32]);
    }
    memo.extend_from_slice(farmer);
    memo.extend_from_slice(key_gen(&[5u8; 32]).unwrap().to_bytes().expose_secret());
    memo
}

#[test]
fn memo_errors() {
    let master = key_gen(&[1u8; 32]).unwrap();
    let farmer = key_gen(&[2u8; 32]).unwrap().public_key();
    for len in [0usize, 48, 96, 111, 113, 127, 129, 144, 256] {
        let memo = vec![0x80; len];
        assert_eq!(parse_memo(&memo).unwrap_err(), KeyError::MemoLength { len });
        assert_eq!(check_plot_id(&memo, &[0; 32]).unwrap_err(), KeyError::MemoLength { len });
    }
    let memo = [&[9u8; 32][..], &farmer, master.to_bytes().expose_secret()].concat();
    let id = parse_memo(&memo).unwrap().derive().unwrap().plot_id();
    for i in [0usize, 31] {
        let mut wrong = id;
        wrong[i] ^= 0x01;
        let err = check_plot_id(&memo, &wrong).unwrap_err();
        assert_eq!(err, KeyError::IdMismatch { expected: wrong, found: id });
        let text = err.to_string();
        assert!(text.contains(&hex::encode(wrong)) && text.contains(&hex::encode(id)), "{text}");
    }
    // The id of the other memo kind (same farmer key and master key) does not match.
    let og = [&farmer[..], &farmer, master.to_bytes().expose_secret()].concat();
    assert!(matches!(check_plot_id(&og, &id), Err(KeyError::IdMismatch { .. })));
    // Master key at or above the group order.
    let mut bad = memo.clone();
    bad[80..].fill(0xff);
    assert_eq!(
        parse_memo(&bad).unwrap_err(),
        KeyError::BadSecretKey { field: "memo master secret key" }
    );
}
