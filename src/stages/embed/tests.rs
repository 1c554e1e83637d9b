//! Tests of the embed stage's pure parts: gathering inputs into per-lane batches and splitting
//! embedded batches across writers.

use super::*;

fn input(partition: i32, offset: i64) -> Input {
    Input {
        topic: "canonical.candidate".into(),
        partition,
        offset,
        key: None,
        payload: Vec::new(),
        trace: None,
        replay_count: 0,
    }
}

fn key(id: &str) -> Key {
    Key {
        entity: Entity::Candidate,
        crm: "bullhorn".into(),
        crm_id: id.into(),
    }
}

fn rec(id: &str, partition: i32, offset: i64, delete: bool) -> Rec {
    Rec {
        key: key(id),
        version: 1,
        action: if delete {
            Action::Delete
        } else {
            Action::Embed {
                text: String::new(),
                hash: Arc::from("h"),
            }
        },
        input: input(partition, offset),
        span: None,
    }
}

#[test]
fn split_deals_records_dead_letters_and_offsets_by_partition() {
    let t = "canonical.candidate".to_owned();
    let prepared = Prepared {
        seq: 7,
        embed: vec![
            (rec("a", 0, 10, false), Arc::from("h")),
            (rec("b", 1, 20, false), Arc::from("h")),
            (rec("c", 2, 30, false), Arc::from("h")),
        ],
        texts: vec![String::new(); 3],
        deletes: vec![rec("d", 3, 40, true)],
        dead: vec![(input(2, 31), "decode", "canonical.decode", "x".into())],
        skipped: vec![(key("e"), State::ABSENT, 5)],
        next: [
            ((t.clone(), 0), 11),
            ((t.clone(), 1), 21),
            ((t.clone(), 2), 32),
            ((t.clone(), 3), 41),
            ((t.clone(), 5), 51),
        ]
        .into_iter()
        .collect(),
        messages: 7,
        by_partition: [(0, 2), (1, 1), (2, 2), (3, 1), (5, 1)]
            .into_iter()
            .collect(),
    };
    let vectors = vec![Ok(vec![0.0]), Ok(vec![1.0]), Ok(vec![2.0])];
    let parts = split(Embedded { prepared, vectors }, 2);
    assert_eq!(parts.len(), 2);
    let (l0, even) = &parts[0];
    let (l1, odd) = &parts[1];
    assert_eq!((*l0, *l1), (0, 1));
    let ids = |e: &Embedded| -> Vec<String> {
        e.prepared
            .embed
            .iter()
            .map(|(r, _)| r.key.crm_id.clone())
            .collect()
    };
    assert_eq!(ids(even), ["a", "c"]);
    assert_eq!(ids(odd), ["b"]);
    // Each vector stays with its record.
    assert_eq!(
        even.vectors.iter().flatten().collect::<Vec<_>>(),
        [&vec![0.0], &vec![2.0]]
    );
    assert_eq!(
        odd.vectors.iter().flatten().collect::<Vec<_>>(),
        [&vec![1.0]]
    );
    assert_eq!(even.prepared.dead.len(), 1);
    assert!(odd.prepared.dead.is_empty());
    assert_eq!(odd.prepared.deletes.len(), 1);
    assert_eq!(odd.prepared.skipped.len(), 1);
    let parts_of = |e: &Embedded| {
        let mut p: Vec<i32> = e.prepared.next.keys().map(|(_, p)| *p).collect();
        p.sort();
        p
    };
    assert_eq!(parts_of(even), [0, 2]);
    assert_eq!(parts_of(odd), [1, 3, 5]);
    assert!(parts.iter().all(|(_, e)| e.prepared.seq == 7));
    // Every input message is counted once, in the part of its partition.
    assert_eq!((even.prepared.messages, odd.prepared.messages), (4, 3));

    // A writer whose partitions had no message gets no part.
    let only_even = Prepared {
        seq: 8,
        embed: Vec::new(),
        texts: Vec::new(),
        deletes: Vec::new(),
        dead: Vec::new(),
        skipped: vec![(key("f"), State::ABSENT, 4)],
        next: [((t, 4), 5)].into_iter().collect(),
        messages: 1,
        by_partition: [(4, 1)].into_iter().collect(),
    };
    let parts = split(
        Embedded {
            prepared: only_even,
            vectors: Vec::new(),
        },
        2,
    );
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].0, 0);
}
