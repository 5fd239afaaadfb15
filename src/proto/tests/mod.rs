//! Scenario and property tests of the engine, all driven through the
//! two-engine harness in [`util`].

mod attacks;
mod props;
mod scenarios;
mod util;
