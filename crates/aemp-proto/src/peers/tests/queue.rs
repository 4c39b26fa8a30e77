//! The send queue limit of nodes being reached (see [Send queue limit](super::super)).

use super::*;

/// The estimated size of `m(seq)` for port `p`.
fn size(seq: i64) -> usize {
    frame_size_estimate("p", m(seq).as_slice())
}

#[test]
fn the_reason_names_the_limit() {
    assert_eq!(send_queue_over(1024), "send queue over 1024 bytes");
}

#[test]
fn a_queue_over_the_limit_fails_the_attempt_like_a_failed_connect() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    t.set_send_queue_limit(Some(3 * size(0)));
    assert_eq!(t.send_queue_limit(), Some(3 * size(0)));
    t.learn_address("n", addr(1));
    let mut out = Vec::new();
    for i in 0..3 {
        t.send("n", "p", m(i), t0, &mut out);
    }
    assert_eq!(out, vec![dial("n", addr(1))], "three messages fit");
    assert_eq!(t.queued("n"), 3);
    out.clear();

    // The fourth is over: the attempt fails at once, the queue (it included) is dropped.
    t.send("n", "p", m(3), t0 + ms(10), &mut out);
    let reason = send_queue_over(3 * size(0));
    assert_eq!(out, vec![lost("n", &reason, 4)]);
    assert!(!t.is_connecting("n") && !t.is_up("n"));
    assert_eq!(t.queued("n"), 0);
    assert_eq!(t.poll_timeout(), None, "the attempt's timers are gone");
    assert_eq!(
        t.known_addresses("n"),
        &[addr(1)],
        "the address stays known"
    );
    out.clear();

    // The next message starts a new attempt; only it reaches the connection.
    t.send("n", "p", m(4), t0 + ms(20), &mut out);
    assert_eq!(out, vec![dial("n", addr(1))]);
    assert_eq!(t.queued("n"), 1);
    out.clear();
    let link = TestLink::new(1);
    t.up("n", link.clone(), t0 + ms(30), &mut out);
    assert_eq!(out, vec![Effect::NodeUp { node: "n".into() }]);
    assert_eq!(
        link.take(),
        vec![4],
        "nothing after the gap but what came after it"
    );

    // Up, the table leaves the limit to the link: sends go straight into it.
    out.clear();
    for i in 5..20 {
        t.send("n", "p", m(i), t0 + ms(40), &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(link.take(), (5..20).collect::<Vec<_>>());
}

#[test]
fn a_queue_waiting_for_a_look_up_is_bounded_too() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    t.set_send_queue_limit(Some(2 * size(0)));
    let mut out = Vec::new();
    t.send("n", "p", m(0), t0, &mut out);
    t.send("n", "p", m(1), t0, &mut out);
    assert_eq!(out, vec![Effect::Lookup { node: "n".into() }]);
    out.clear();
    t.send("n", "p", m(2), t0, &mut out);
    assert_eq!(out, vec![lost("n", &send_queue_over(2 * size(0)), 3)]);
    // The look-up's late answer dials nothing: no attempt is waiting for it.
    out.clear();
    t.addresses("n", vec![addr(1)], t0 + ms(5), &mut out);
    assert!(out.is_empty());
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn a_lone_message_is_never_over_the_limit() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    t.set_send_queue_limit(Some(8));
    t.learn_address("n", addr(1));
    let mut out = Vec::new();
    t.send("n", "p", msg!["x".repeat(1000)], t0, &mut out);
    assert_eq!(out, vec![dial("n", addr(1))]);
    assert_eq!(t.queued("n"), 1);
    out.clear();
    t.send("n", "p", m(1), t0, &mut out);
    assert_eq!(out, vec![lost("n", "send queue over 8 bytes", 2)]);
}

#[test]
fn an_empty_attempt_counts_from_zero() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    t.set_send_queue_limit(Some(size(0)));
    t.learn_address("n", addr(1));
    let mut out = Vec::new();
    t.ensure_connected("n", t0, &mut out);
    t.send("n", "p", m(0), t0, &mut out);
    assert_eq!(
        out,
        vec![dial("n", addr(1))],
        "exactly at the limit is not over it"
    );
    out.clear();
    t.send("n", "p", m(1), t0, &mut out);
    assert_eq!(out, vec![lost("n", &send_queue_over(size(0)), 2)]);
}

#[test]
fn without_a_limit_the_queue_grows_as_in_the_reference() {
    let t0 = Instant::now();
    let mut t = table(2000, 3000);
    t.set_send_queue_limit(Some(100));
    t.set_send_queue_limit(None);
    assert_eq!(t.send_queue_limit(), None);
    t.learn_address("n", addr(1));
    let mut out = Vec::new();
    for i in 0..10_000 {
        t.send("n", "p", msg!["x".repeat(100), i], t0, &mut out);
    }
    assert_eq!(out, vec![dial("n", addr(1))]);
    assert_eq!(t.queued("n"), 10_000);
    // It fails only at its deadline, with everything it held.
    let all = run_until(&mut t, t0, t0 + ms(10_000));
    assert_eq!(all, vec![(ms(2000), lost("n", CONNECT_TIMEOUT, 10_000))]);
}
