use super::*;

pub(super) fn ticket(offset: u64) -> Committed {
    Committed {
        offset: PLogOffset(offset),
        generation: 0,
    }
}

pub(super) fn k(i: u64) -> Key {
    (WsId(i), SeqId(0))
}

#[test]
fn take_names_the_reservation_it_depends_on() {
    let now = Instant::now();
    let mut l = Lease::new(now);
    l.add(10, 16, ticket(1));
    assert_eq!(l.take(4), (Number(10), Some(ticket(1))));
    l.add(26, 16, ticket(2));
    assert_eq!(l.left, 12 + 16);
    assert_eq!(l.take(12), (Number(14), Some(ticket(1))));
    assert_eq!(l.take(1), (Number(26), Some(ticket(2))));
    l.prune(PLogOffset(1), 0);
    assert_eq!(l.take(1), (Number(27), Some(ticket(2))));
    l.prune(PLogOffset(5), 1);
    assert_eq!(
        l.take(1),
        (Number(28), Some(ticket(2))),
        "another generation"
    );
    l.prune(PLogOffset(2), 0);
    assert_eq!(l.take(1), (Number(29), None));
}

#[test]
fn a_non_contiguous_reservation_gives_up_the_rest() {
    let mut l = Lease::new(Instant::now());
    l.add(10, 16, ticket(1));
    l.take(1);
    l.add(100, 16, ticket(2));
    assert_eq!((l.cursor, l.left), (100, 16));
}

#[test]
fn window_adapts_to_the_rate() {
    let t0 = Instant::now();
    let mut l = Lease::new(t0);
    assert_eq!(l.next_window(t0 + Duration::from_millis(1)), MIN_WINDOW * 2);
    assert_eq!(l.next_window(t0 + Duration::from_millis(2)), MIN_WINDOW * 4);
    assert_eq!(l.next_window(t0 + Duration::from_secs(1)), MIN_WINDOW * 4);
    assert_eq!(l.next_window(t0 + Duration::from_secs(30)), MIN_WINDOW * 2);
    // Never shrinks below twice what is left: the top-up stays at least half a window.
    l.left = MIN_WINDOW;
    assert_eq!(l.next_window(t0 + Duration::from_secs(60)), MIN_WINDOW * 2);
    l.left = 0;
    for i in 0..40 {
        l.next_window(t0 + Duration::from_secs(60) + Duration::from_micros(i));
    }
    assert_eq!(l.window, MAX_WINDOW);
}

#[test]
fn a_top_up_leaves_one_window_and_is_at_least_half_of_it() {
    let t0 = Instant::now();
    let mut l = Lease::new(t0);
    l.add(1, 16, ticket(1));
    l.take(10);
    // 6 left of 16: a top-up ahead (a second later: same window) reserves the other 10.
    let n = l.top_up(0, t0 + Duration::from_secs(1));
    assert_eq!(n, 10);
    l.add(17, n, ticket(2));
    assert_eq!((l.cursor, l.left), (11, 16));
    // A request larger than what is left reserves count - left + window (the window
    // doubled: used up within 100 ms).
    let n = l.top_up(40, t0 + Duration::from_millis(1_010));
    assert_eq!(n, 40 - 16 + 32);
    l.add(27, n, ticket(3));
    assert_eq!(l.take(40), (Number(11), Some(ticket(3))));
    assert_eq!(l.left, l.window);
}

/// The partition's `NEXT` of one number of a sequence with no lease: reserves what the plan
/// says at `at`; the number taken.
fn first_next(ls: &mut Leases, key: Key, at: u64, offset: u64, now: Instant) -> Option<Number> {
    let Plan::Reserve(n) = ls.plan_next(key, 1, now, None) else {
        return None;
    };
    assert_eq!(n, 2 * MIN_WINDOW + 1, "one number and a (doubled) window");
    ls.reserved(key, at, n, ticket(offset), 1).map(|t| t.0)
}

#[test]
fn evicted_leases_are_parked_resumed_and_saved() {
    let now = Instant::now();
    let mut ls = Leases::new(2);
    for i in 1..=3 {
        assert_eq!(first_next(&mut ls, k(i), 1, i, now), Some(Number(1)));
    }
    // The third sequence evicted the first (second chance: both were referenced).
    let stats = ls.stats();
    assert_eq!((stats.leases, stats.parked, stats.evictions), (2, 1, 1));
    assert_eq!(ls.serve_peek(k(1)), Some(2), "PEEK sees the parked cursor");
    let cursors: Vec<_> = ls.cursors().collect();
    assert!(
        cursors.contains(&(k(1), 2)),
        "saved at shutdown: {cursors:?}"
    );
    // Used again: resumes where it stopped, still waiting for its reservation's write.
    assert_eq!(
        ls.plan_next(k(1), 1, now, None),
        Plan::Taken {
            first: Number(2),
            dep: Some(ticket(1)),
            top_up: None
        }
    );
    ls.prune_pending(PLogOffset(3), 0);
    assert_eq!(
        ls.serve_next(k(1), 1, || None),
        Served::Number {
            first: 3,
            prefetch: false
        }
    );
    // Parked ranges are bounded too: past `capacity` of them the oldest is given up.
    for i in 4..=8 {
        assert!(first_next(&mut ls, k(i), 1, i, now).is_some());
    }
    let stats = ls.stats();
    assert_eq!((stats.leases, stats.parked), (2, 2));
    assert!(stats.dropped >= 1, "{stats:?}");
    ls.clear();
    assert_eq!(ls.stats().leases + ls.stats().parked, 0);
}

#[test]
fn a_restored_cursor_is_a_durable_lease() {
    let now = Instant::now();
    let mut ls = Leases::new(8);
    ls.restore(k(4), 5, 9, now);
    ls.restore(k(5), 9, 9, now);
    assert_eq!(ls.cursors().collect::<Vec<_>>(), vec![(k(4), 5)]);
    assert_eq!(
        ls.serve_next(k(4), 4, || None),
        Served::Number {
            first: 5,
            prefetch: true
        }
    );
}

#[test]
fn connections_take_only_durably_reserved_numbers() {
    let now = Instant::now();
    let mut ls = Leases::new(8);
    let key = (WsId(7), SeqId(1));
    assert_eq!(
        ls.serve_next(key, 1, || None),
        Served::Route,
        "no lease yet"
    );
    assert_eq!(first_next(&mut ls, key, 1, 1, now), Some(Number(1)));
    assert_eq!(
        ls.serve_next(key, 1, || None),
        Served::Route,
        "still being written"
    );
    ls.prune_pending(PLogOffset(1), 1);
    assert_eq!(
        ls.serve_next(key, 1, || None),
        Served::Route,
        "another generation"
    );
    ls.prune_pending(PLogOffset(1), 0);
    let number = |first, prefetch| Served::Number { first, prefetch };
    assert_eq!(ls.serve_next(key, 4, || None), number(2, false));
    assert_eq!(
        ls.serve_next(key, 29, || None),
        Served::Route,
        "only 28 left"
    );
    assert_eq!(ls.serve_next(key, 12, || None), number(6, false));
    assert_eq!(
        ls.serve_next(key, 1, || None),
        number(18, true),
        "less than half the window left: ask for a top-up"
    );
    assert_eq!(
        ls.serve_next(key, 1, || None),
        number(19, false),
        "asked once"
    );
    assert_eq!(ls.serve_peek(key), Some(20));
    let n = ls.plan_prefetch(key, now).expect("a top-up");
    assert_eq!(
        n,
        4 * MIN_WINDOW - 14,
        "up to one (doubled) window ahead of the cursor"
    );
    ls.reserved(key, 34, n, ticket(2), 0);
    assert_eq!(ls.serve_next(key, 14, || None), number(20, false));
    assert_eq!(
        ls.serve_next(key, 1, || None),
        Served::Route,
        "34 is not durable yet"
    );
    ls.prune_pending(PLogOffset(2), 0);
    assert_eq!(ls.serve_next(key, 1, || None), number(34, false));
    ls.close();
    assert_eq!(
        ls.serve_next(key, 1, || None),
        Served::Route,
        "closed: saving cursors"
    );
    assert_eq!(ls.serve_peek(key), None);
    assert_eq!(ls.served, (6, 33));
}

/// A connection confirms a lease's reservation itself from the sequencer's checkpoint, with
/// no `prune_pending` by the worker — and never one of another generation.
#[test]
fn connections_confirm_durable_reservations_themselves() {
    let now = Instant::now();
    let mut ls = Leases::new(8);
    let key = (WsId(7), SeqId(1));
    assert_eq!(first_next(&mut ls, key, 1, 1, now), Some(Number(1)));
    let mut asked = 0;
    let mut durability = |d| {
        asked += 1;
        d
    };
    assert_eq!(
        ls.serve_next(key, 1, || durability(Some((PLogOffset(0), 0)))),
        Served::Route,
        "checkpoint below the reservation"
    );
    assert_eq!(
        ls.serve_next(key, 1, || durability(Some((PLogOffset(1), 1)))),
        Served::Route,
        "another generation"
    );
    assert_eq!(ls.serve_next(key, 1, || durability(None)), Served::Route);
    let number = |first, prefetch| Served::Number { first, prefetch };
    assert_eq!(
        ls.serve_next(key, 1, || durability(Some((PLogOffset(1), 0)))),
        number(2, false)
    );
    assert_eq!(
        ls.serve_next(key, 1, || durability(Some((PLogOffset(9), 0)))),
        number(3, false),
        "nothing left to confirm: not asked"
    );
    assert_eq!(asked, 4);
}

#[test]
fn a_reservation_below_the_resume_floor_is_served_before_it_is_durable() {
    let now = Instant::now();
    let mut t = Leases::new(8);
    t.set_cover(40);
    // A new sequence: its first reservation 1..33 lies below the floor.
    assert_eq!(t.plan_next(k(1), 1, now, None), Plan::Reserve(33));
    assert_eq!(
        t.reserved(k(1), 1, 33, ticket(1), 1),
        Some((Number(1), None))
    );
    let no_checkpoint = || None;
    for want in 2..=33 {
        assert!(
            matches!(t.serve_next(k(1), 1, no_checkpoint), Served::Number { first, .. } if first == want),
            "{want} is covered by the floor: no durability needed"
        );
    }
    // The top-up straddles the floor: what lies above it waits for its own write.
    assert_eq!(
        t.reserved(k(1), 34, 64, ticket(2), 0),
        Some((Number(34), None))
    );
    for want in 34..40 {
        assert!(matches!(
            t.serve_next(k(1), 1, no_checkpoint),
            Served::Number { first, .. } if first == want
        ));
    }
    assert_eq!(t.serve_next(k(1), 1, no_checkpoint), Served::Route);
    assert_eq!(
        t.plan_next(k(1), 1, now, None),
        Plan::Taken {
            first: Number(40),
            dep: Some(ticket(2)),
            top_up: None
        }
    );
    // A sequence whose numbers start above the floor is not covered at all.
    assert_eq!(t.plan_next(k(2), 1, now, None), Plan::Reserve(33));
    assert_eq!(
        t.reserved(k(2), 500, 33, ticket(3), 1),
        Some((Number(500), Some(ticket(3))))
    );
    // Floors only go up.
    t.set_cover(10);
    assert_eq!(t.plan_next(k(3), 1, now, None), Plan::Reserve(33));
    assert_eq!(
        t.reserved(k(3), 20, 33, ticket(4), 1),
        Some((Number(20), None))
    );
}
