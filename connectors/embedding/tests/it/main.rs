//! Integration tests of the embedding client against the simulator.
