//! Scenario tests of the core (virtual time, no sockets).
