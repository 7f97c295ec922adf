//! Lookups driven together (`drive_many`, `supply_batch`: parks of different lookups, of
//! different plots and sizes, decoded two at a time) answer exactly as each lookup alone,
//! whose answers `oracle.rs` holds against chiapos.

mod support;

use plot_format::{drive_many, Goal, Lookup, Mode};
use support::*;

/// Lookups of every fixture, interleaved (neighbours are of different plots and k), a few
/// of them aimed at C1 checkpoints, where lookups run longest.
fn mixed(mems: &[MemPlot], per_plot: u32) -> Vec<(usize, [u8; 32])> {
    let sets: Vec<Vec<[u8; 32]>> = mems
        .iter()
        .enumerate()
        .map(|(p, mem)| {
            let mut set = challenges(&format!("together-{p}"), per_plot);
            for (i, v) in c1_values(mem).into_iter().take(8).enumerate() {
                set.push(challenge_for_f7(mem.plot.k(), v, i as u32));
            }
            set
        })
        .collect();
    let longest = sets.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| sets.iter().enumerate().filter_map(move |(p, s)| Some((p, *s.get(i)?))))
        .collect()
}

#[test]
fn lookups_driven_together_answer_as_each_alone() {
    let mems: Vec<MemPlot> = fixtures().iter().map(|f| MemPlot::load(&f.path)).collect();
    let jobs = mixed(&mems, 40);
    let goals = [Goal::Qualities, Goal::QualitiesAndProofs, Goal::Proof { index: 0 }];
    let mut buffers = Vec::new();
    let mut found = 0;
    for mode in [Mode::Chiapos, Mode::Complete] {
        for goal in goals {
            // Groups of several sizes: 2 (the least that pairs), 8, and more lookups than
            // one step reads (proof rounds of up to 32 parks each).
            for group in [2, 8, 24] {
                for chunk in jobs.chunks(group) {
                    let mut lookups: Vec<Lookup> = chunk
                        .iter()
                        .map(|(p, challenge)| mems[*p].plot.lookup(challenge, goal, mode))
                        .collect();
                    let result = drive_many(&mut lookups, &mut buffers, |l, request, buffer| {
                        let bytes = test_support::plot::read_at(&mems[chunk[l].0].bytes, request);
                        // As the harvester's reader does: resized, not cleared, so a
                        // buffer holds an earlier read's bytes until these replace them.
                        buffer.resize(bytes.len(), 0);
                        buffer.copy_from_slice(bytes);
                        Ok::<(), ()>(())
                    });
                    assert_eq!(result, Ok(()));
                    for ((p, challenge), lookup) in chunk.iter().zip(lookups) {
                        let together = lookup.into_outcome().expect("drive_many finishes");
                        let alone = mems[*p].lookup_one_by_one(challenge, goal, mode);
                        assert_eq!(
                            together,
                            alone,
                            "plot {p}, {goal:?}, {mode:?}, group {group}, {}",
                            hex::encode(challenge)
                        );
                        found += alone.map_or(0, |f| f.len());
                    }
                }
            }
        }
    }
    assert!(found >= 500, "coverage: {found} answers");
}

#[test]
fn a_read_error_ends_the_drive_and_leaves_the_lookups_unfinished() {
    let mem = MemPlot::load(&fixtures()[0].path);
    let mut lookups: Vec<Lookup> = challenges("together-error", 8)
        .iter()
        .map(|c| mem.plot.lookup(c, Goal::QualitiesAndProofs, Mode::Chiapos))
        .collect();
    let running = lookups.iter().filter(|l| !l.is_done()).count();
    assert!(running > 0, "some lookups need reads");
    let mut reads = 0;
    let result = drive_many(&mut lookups, &mut Vec::new(), |_, request, buffer| {
        reads += 1;
        if reads == 12 {
            return Err(reads);
        }
        buffer.clear();
        buffer.extend_from_slice(test_support::plot::read_at(&mem.bytes, request));
        Ok(())
    });
    assert_eq!(result, Err(12), "the reader's error, at once");
    assert!(lookups.iter().any(|l| !l.is_done()), "the drive stopped with lookups unfinished");
}
