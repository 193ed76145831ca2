//! Failpoints for crash tests (cargo feature `failpoints`): `NILEDR_FAILPOINTS=after_intent:promote`
//! makes the daemon SIGKILL itself when it reaches that point. Without the feature, `hit` is a
//! no-op the compiler removes.

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    let Ok(list) = std::env::var("NILEDR_FAILPOINTS") else {
        return;
    };
    if list.split(',').any(|p| p.trim() == name) {
        eprintln!("failpoint {name}: SIGKILL");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
