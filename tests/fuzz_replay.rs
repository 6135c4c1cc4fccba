//! Replays every fuzz target's seed corpus (built from the vectors), its committed minimised
//! corpus (`fuzz/corpus-min/<target>/`) and the inputs of fixed crashes
//! (`fuzz/regressions/<target>/`) as ordinary tests.

use grapevine::fuzzing::seeds::{Seed, corpus};
use grapevine::fuzzing::*;
use grapevine::wire::frame::MAX_MESSAGE_SIZE;

mod replay {
    use super::*;

    fn seeds_of(target: &str) -> Vec<Seed> {
        let seeds = corpus(target).expect("the vectors load");
        assert!(!seeds.is_empty(), "no seeds for {target}");
        seeds
    }

    #[test]
    fn every_target_has_seeds_and_runs_them() {
        for target in TARGETS {
            for seed in seeds_of(target) {
                run(target, &seed.data);
            }
        }
    }

    /// The files of `fuzz/<dir>/<target>/`, by name.
    fn committed(dir: &str, target: &str) -> Vec<(String, Vec<u8>)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join(dir)
            .join(target);
        let Ok(entries) = std::fs::read_dir(&path) else {
            return Vec::new();
        };
        let mut files: Vec<(String, Vec<u8>)> = entries
            .map(|e| {
                let e = e.expect("a readable corpus folder");
                let data = std::fs::read(e.path()).expect("a readable corpus file");
                (e.file_name().to_string_lossy().into_owned(), data)
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn every_target_replays_its_committed_corpus() {
        for target in TARGETS {
            let files = committed("corpus-min", target);
            assert!(
                !files.is_empty(),
                "fuzz/corpus-min/{target}/ holds the minimised corpus"
            );
            for (name, data) in files {
                eprintln!("{target}/{name}");
                run(target, &data);
            }
        }
    }

    #[test]
    fn fixed_crashes_stay_fixed() {
        let mut replayed = 0;
        for target in TARGETS {
            for (name, data) in committed("regressions", target) {
                eprintln!("{target}/{name}");
                run(target, &data);
                replayed += 1;
            }
        }
        assert!(replayed > 0, "fuzz/regressions holds the fixed crashes");
    }

    #[test]
    fn frame_decoder_seeds_yield_their_frames() {
        for seed in seeds_of("frame_decoder") {
            let expected = seed
                .expect
                .expect("frame seeds say how many frames they hold");
            assert_eq!(frame_decoder(&seed.data), expected, "seed {}", seed.name);
        }
    }

    #[test]
    fn message_decode_seeds_decode_and_round_trip() {
        for seed in seeds_of("message_decode") {
            assert!(
                message_decode(&seed.data),
                "seed {} did not decode",
                seed.name
            );
        }
    }

    #[test]
    fn raw_roundtrip_seeds_decode_and_round_trip() {
        let mut types = std::collections::BTreeSet::new();
        for seed in seeds_of("raw_roundtrip") {
            assert!(
                raw_roundtrip(&seed.data),
                "seed {} did not decode",
                seed.name
            );
            types.insert(core_type_of(seed.data[0]));
        }
        assert_eq!(
            types.len(),
            CORE_TYPES.count(),
            "every core type has a seed"
        );
    }

    #[test]
    fn handshake_seeds_complete_the_exchange() {
        let mut keyed = 0;
        for seed in seeds_of("handshake") {
            let got = handshake(&seed.data);
            if let Some(expected) = seed.expect {
                assert_eq!(got, Some(expected), "seed {}", seed.name);
                keyed += 1;
            }
        }
        assert!(
            keyed > 0,
            "some handshake seeds are encrypted to the fuzzing key"
        );
    }

    #[test]
    fn node_events_seeds_reach_their_depth() {
        let mut synced = 0;
        for seed in seeds_of("node_events") {
            let depth = node_events(&seed.data);
            eprintln!("{}: {depth:?}", seed.name);
            let expected = seed.expect.expect("node_events seeds say how deep they go");
            assert_eq!(depth.max_active, expected, "seed {}", seed.name);
            if depth.blocks_applied > 0 {
                synced += 1;
            }
        }
        assert!(synced >= 2, "the sync seeds apply blocks");
    }

    #[test]
    fn hostile_inputs_are_handled() {
        // An oversized header, with every chunk size.
        let mut oversized = vec![0u8];
        oversized.extend_from_slice(&(MAX_MESSAGE_SIZE as u32 + 1).to_le_bytes());
        oversized.extend_from_slice(&5006u32.to_le_bytes());
        for step in [0u8, 3, 255] {
            oversized[0] = step;
            assert_eq!(frame_decoder(&oversized), 0);
        }
        // A header declaring the maximum, and no body.
        let mut max = vec![1u8];
        max.extend_from_slice(&(MAX_MESSAGE_SIZE as u32).to_le_bytes());
        max.extend_from_slice(&1001u32.to_le_bytes());
        assert_eq!(frame_decoder(&max), 0);
        for target in TARGETS {
            for input in [&[][..], &[0], &[0xff; 3], &[0; 40], &[0xff; 100]] {
                run(target, input);
            }
        }
        // A block message too short for its id, an unknown type.
        assert!(!message_decode(&[0xe9, 0x03, 0, 0, 1, 2, 3]));
        assert!(message_decode(&[0x39, 0x05, 0, 0, 1, 2, 3]));
        // Junk instead of a public key.
        assert_eq!(handshake(&[0u8; 40]), None);
        assert_eq!(handshake(&[]), Some(0));
    }
}
