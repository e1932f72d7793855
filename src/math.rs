//! The two C math functions the binary calls, so that it does not load
//! libm at all.
//!
//! `pow` (indicatif's progress formatting) and `log2` (fastcdc's chunker
//! set-up) are the only libm symbols the binary uses. Defined here, with
//! musl's implementations (the `libm` crate, the one Rust's own runtime
//! builds on), the linker needs nothing from libm, and every start is spared
//! mapping a 0.9 MB library: from a dropped cache, `rewind --version` ran
//! 0.6 to 2.3 ms sooner on the benchmark VM (medians of 9 rounds, three
//! alternating pairs, `scripts/bench-cold-start.sh`). A linker that resolves
//! them from libm anyway loses only that.

/// `pow(3)`.
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// `log2(3)`.
#[no_mangle]
pub extern "C" fn log2(x: f64) -> f64 {
    libm::log2(x)
}

#[cfg(test)]
mod tests {
    #[test]
    fn as_libm_says() {
        assert_eq!(super::log2(1024.0), 10.0);
        assert_eq!(super::log2(524_288.0), 19.0);
        assert_eq!(super::pow(1024.0, 2.0), 1_048_576.0);
        assert_eq!(super::pow(2.0, -1.0), 0.5);
        assert!((super::pow(10.0, 0.5) - 10f64.sqrt()).abs() < 1e-15);
        assert!(super::log2(-1.0).is_nan());
    }
}
