//! Active health probes: one task per pool with a `[backend_pool.probe]`, on the actix system
//! that runs the servers. Every `interval` it probes all members at once (a GET of `path` on a new
//! connection, within `timeout`); `BackendPool::record_probe` takes a member out of rotation after
//! `unhealthy_threshold` failures in a row and puts it back after one success.

use std::sync::Arc;

use tracing::debug;

use crate::proxy::BackendPool;

/// Starts probing `pool` if it has a probe; the task lives as long as the actix system.
pub fn spawn(pool: Arc<BackendPool>) {
    let Some(probe) = pool.probe.clone() else {
        return;
    };
    actix_web::rt::spawn(async move {
        loop {
            let rounds = pool.members().iter().map(|member| {
                let pool = &pool;
                let probe = &probe;
                async move {
                    // The client's timeout covers the answer's head; this bounds the whole probe.
                    let outcome =
                        match tokio::time::timeout(probe.timeout, pool.probe_once(member, probe))
                            .await
                        {
                            Ok(outcome) => outcome,
                            Err(_) => Err("timed out".to_owned()),
                        };
                    if let Err(err) = &outcome {
                        debug!(pool = %pool.name, backend = %member.address, error = %err, "probe failed");
                    }
                    pool.record_probe(member, outcome.is_ok(), outcome.err().as_deref().unwrap_or(""));
                }
            });
            futures_util::future::join_all(rounds).await;
            tokio::time::sleep(probe.interval).await;
        }
    });
}
