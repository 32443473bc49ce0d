//! A connection flood from one source address: valid subscriptions (each its own user, so that
//! only `limits.max_connections_per_ip` can refuse them), first `count` as fast as the server
//! takes them, then `rate` more per second until the attack stops. Accepted streams are held
//! open to the end; refused ones are counted with how long their refusal took.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

use super::raw::{self, Statuses};
use crate::targets::Target;

/// Flood users are `u200000` and up.
const FIRST_USER: u32 = 200_000;

#[derive(Debug, Default)]
pub struct Flood {
    pub answers: Statuses,
    /// Milliseconds from connecting to a refusal (any answer but 200).
    pub refused_after_ms: Vec<f64>,
}

#[derive(Default)]
struct State {
    flood: Flood,
    held: Vec<TcpStream>,
}

pub async fn run(target: Target, count: u32, rate: f64, concurrency: usize, mut stop: watch::Receiver<bool>) -> Flood {
    let state = Rc::new(RefCell::new(State::default()));
    let gate = Rc::new(Semaphore::new(concurrency.max(1)));
    let source = raw::source(super::FLOOD_FAMILY, 0);
    let attempt = |user: u32| {
        let (state, gate, target) = (state.clone(), gate.clone(), target.clone());
        tokio::task::spawn_local(async move {
            let Ok(_permit) = gate.acquire().await else { return };
            one(&target, source, user, &state).await;
        })
    };
    let first: Vec<_> = (0..count).map(|i| attempt(FIRST_USER + i)).collect();
    for task in first {
        let _ = task.await;
    }
    let start = Instant::now();
    for i in 0u32.. {
        let due = start + Duration::from_secs_f64(f64::from(i) / rate.max(0.001));
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        drop(attempt(FIRST_USER + count + i));
    }
    // Let the attempts in flight finish and refuse the ones not started, then close everything held.
    let _all = gate.acquire_many(concurrency.max(1) as u32).await;
    gate.close();
    let state = std::mem::take(&mut *state.borrow_mut());
    state.flood
}

async fn one(target: &Target, source: IpAddr, user: u32, state: &RefCell<State>) {
    let started = Instant::now();
    let token = crate::jwt::mint(&target.jwt_secret, user, &[]);
    let request = raw::get(target.addr, &format!("/events?access_token={token}"));
    let mut stream = None;
    let outcome = match raw::connect(target.addr, source, None).await {
        Ok(mut s) => {
            let status = raw::exchange(&mut s, &request).await;
            stream = Some(s);
            status
        }
        Err(e) => Err(e),
    };
    let mut state = state.borrow_mut();
    raw::count(&mut state.flood.answers, &outcome);
    match (outcome, stream) {
        (Ok(200), Some(s)) => state.held.push(s),
        (Ok(_), _) => state.flood.refused_after_ms.push(started.elapsed().as_secs_f64() * 1000.0),
        _ => {}
    }
}
