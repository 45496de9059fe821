"""Local emulators of outside services, started by tests and benchmarks on 127.0.0.1."""
