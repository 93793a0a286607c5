//! End-to-end tests: the compiled binary, real sockets, a real SQLite file.
//! One test binary keeps link time down.

mod crash;
mod e2e;
mod faults;
mod hostile;
mod packaging;
mod support;
