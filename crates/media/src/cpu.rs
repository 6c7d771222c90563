//! The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`, a vDSO call): what work costs a
//! thread, without the wall time a preempted thread would add. The media port counts its
//! routing with it, the load test its workers, the bench guard each stage.

use std::time::Duration;

/// CPU time the calling thread has used so far; `None` where the clock is unavailable.
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| {
        Duration::new(
            ts.tv_sec.max(0) as u64,
            ts.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_on_this_thread_shows_and_sleeping_does_not_count_as_work() {
        let t0 = thread_cpu_time().expect("Linux has the clock");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let t1 = thread_cpu_time().unwrap();
        assert!(t1 > t0, "{t0:?} {t1:?}");
        std::thread::sleep(Duration::from_millis(50));
        let t2 = thread_cpu_time().unwrap();
        assert!(
            t2 - t1 < Duration::from_millis(50),
            "sleep is not CPU: {:?}",
            t2 - t1
        );
    }
}
