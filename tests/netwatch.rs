//! The network change watcher against the real kernel: in a private
//! network namespace (on its own thread, so nothing else is touched), an
//! address change must be noticed, and a quiet network must stay quiet.

mod common;

use std::process::Command;
use std::time::Duration;

use rock::relay::NetWatch;

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

async fn changed_within(watch: &mut NetWatch, limit: Duration) -> bool {
    tokio::time::timeout(limit, std::future::poll_fn(|cx| watch.poll_changed(cx)))
        .await
        .is_ok()
}

#[test]
fn an_address_change_is_noticed_and_quiet_is_quiet() {
    common::require_root("a private network namespace");
    std::thread::spawn(|| {
        // SAFETY: unshare affects only this thread, which owns everything
        // the test does from here on (the runtime is current-thread).
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut watch = NetWatch::new().expect("subscribe to rtnetlink");
            assert!(
                !changed_within(&mut watch, Duration::from_millis(300)).await,
                "a notice with nothing changed"
            );
            ip(&["link", "set", "lo", "up"]);
            assert!(
                changed_within(&mut watch, Duration::from_secs(2)).await,
                "link up unnoticed"
            );
            // A burst counts once, then quiet again.
            let _ = changed_within(&mut watch, Duration::from_millis(200)).await;
            ip(&["addr", "add", "10.123.0.1/24", "dev", "lo"]);
            assert!(
                changed_within(&mut watch, Duration::from_secs(2)).await,
                "new address unnoticed"
            );
            let _ = changed_within(&mut watch, Duration::from_millis(200)).await;
            ip(&["addr", "del", "10.123.0.1/24", "dev", "lo"]);
            assert!(
                changed_within(&mut watch, Duration::from_secs(2)).await,
                "removed address unnoticed"
            );
        });
    })
    .join()
    .expect("the namespace thread");
}
