//! The version authority in a cluster (SPEC §5, §6), with a real etcd and real processes:
//! the Director runs it under its own epoch and every node answers `VERSION` by forwarding
//! to it; a graceful stop of the Director skips nothing (the next authority chains to the
//! last version handed out); a Director killed with -9 under version load is replaced and
//! no version is handed out twice, every new one above every old one.
#![cfg(feature = "cluster")]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::Cluster;

/// `(last_commit_version, commit_version, epoch)`.
type Commit = (u64, u64, u64);

/// `VERSION COMMIT` through `con`, retried (bounded) while the cluster answers an error.
fn commit(c: &Cluster, i: usize, within: Duration) -> Commit {
    let deadline = Instant::now() + within;
    loop {
        let mut con = c.client(i);
        match redis::cmd("VERSION")
            .arg("COMMIT")
            .query::<Commit>(&mut con)
        {
            Ok(commit) => return commit,
            Err(e) => {
                assert!(Instant::now() < deadline, "VERSION COMMIT on node {i}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The Director's node and epoch in node `i`'s view, once it is not `not`.
fn director(c: &Cluster, i: usize, not: Option<&str>) -> (String, u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = c.view(i);
        if let (Some(node), Some(epoch)) = (
            v["director"]["node"].as_str(),
            v["director"]["epoch"].as_u64(),
        ) && Some(node) != not
        {
            assert_eq!(v["version_authority"], v["director"], "{v}");
            return (node.to_owned(), epoch);
        }
        assert!(Instant::now() < deadline, "no Director in {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every reply chains to the one before: sorted by version, each one's last is the
/// previous one's version.
fn assert_chain(commits: &[Commit]) {
    let mut sorted = commits.to_vec();
    sorted.sort_by_key(|c| c.1);
    for w in sorted.windows(2) {
        assert_eq!(w[1].0, w[0].1, "{:?} does not chain to {:?}", w[1], w[0]);
    }
}

/// Pipelines of `VERSION COMMIT` through node `i` until `stop`; every acknowledged reply.
fn load(addr: String, stop: Arc<AtomicBool>) -> Vec<Commit> {
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let Ok(mut con) =
            redis::Client::open(format!("redis://{addr}/")).and_then(|c| c.get_connection())
        else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = con.set_read_timeout(Some(Duration::from_secs(10)));
        while !stop.load(Ordering::Relaxed) {
            let mut pipe = redis::pipe();
            for _ in 0..8 {
                pipe.cmd("VERSION").arg("COMMIT");
            }
            let Ok(replies) = pipe.query::<Vec<redis::Value>>(&mut con) else {
                break;
            };
            for r in replies {
                if let Ok(c) = redis::from_redis_value::<Commit>(r) {
                    acked.push(c);
                }
            }
        }
    }
    acked
}

#[test]
fn the_director_runs_the_authority_and_failovers_reissue_nothing() {
    let Some(mut c) = Cluster::start(3, "lease", 4) else {
        return;
    };
    c.wait_placed(Duration::from_secs(30), |_| true);
    let (first, epoch1) = director(&c, 0, None);
    // Every node answers, the Director itself and the others by forwarding.
    let mut commits = Vec::new();
    for i in c.running() {
        for _ in 0..20 {
            commits.push(commit(&c, i, Duration::from_secs(10)));
        }
    }
    assert!(commits.iter().all(|c| c.2 == epoch1), "{commits:?}");
    assert_chain(&commits);
    let last = commits.iter().map(|c| c.1).max().unwrap();

    // A graceful stop of the Director: its successor chains to the last version exactly.
    c.stop(c.index(&first));
    let survivor = c.running()[0];
    let (second, epoch2) = director(&c, survivor, Some(&first));
    assert!(epoch2 > epoch1);
    let next = commit(&c, survivor, Duration::from_secs(15));
    assert_eq!(
        next,
        (last, last + 1, epoch2),
        "nothing skipped after SIGTERM"
    );

    // Load through the node that will survive, then kill -9 the Director.
    let gateway = *c
        .running()
        .iter()
        .find(|&&i| c.ids[i] != second)
        .expect("a node that is not the Director");
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..2)
        .map(|_| {
            let (addr, stop) = (c.node(gateway).addr.clone(), Arc::clone(&stop));
            std::thread::spawn(move || load(addr, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    c.kill(c.index(&second));
    let (_, epoch3) = director(&c, gateway, Some(&second));
    assert!(epoch3 > epoch2);
    let resumed = commit(&c, gateway, Duration::from_secs(15));
    let failover = killed.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut all = vec![next, resumed];
    for l in loaders {
        let mine = l.join().expect("load thread");
        // Each connection's versions increase in the order received.
        assert!(mine.windows(2).all(|w| w[0].1 < w[1].1), "not increasing");
        all.extend(mine);
    }
    let unique: HashSet<u64> = all.iter().map(|c| c.1).collect();
    assert_eq!(unique.len(), all.len(), "a version was handed out twice");
    let old_max = all.iter().filter(|c| c.2 == epoch2).map(|c| c.1).max();
    let new: Vec<Commit> = all.iter().copied().filter(|c| c.2 == epoch3).collect();
    let new_min = new
        .iter()
        .map(|c| c.1)
        .min()
        .expect("versions after the kill");
    assert!(
        old_max.is_none_or(|m| m < new_min),
        "a version of the new epoch below one of the old"
    );
    assert_chain(&new);
    // (The old epoch's replies have gaps: commits lost with the killed node's connections.)
    let old: Vec<Commit> = all.iter().copied().filter(|c| c.2 == epoch2).collect();
    println!(
        "versions through a Director kill -9: {} acknowledged ({} before, {} after), \
         first version of the new Director after {:.2} s, {} versions skipped",
        all.len(),
        old.len(),
        new.len(),
        failover.as_secs_f64(),
        new_min - old_max.unwrap_or(new_min - 1) - 1
    );
}
