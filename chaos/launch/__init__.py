"""Launchers for the real servers the lab, the tests and the benchmarks run.

Every launcher starts Debian's own binaries on free loopback ports, with its
data and logs under a directory the caller owns, and stops only the processes
it started, by pid.
"""

from chaos.launch._process import LaunchError, ManagedProcess, free_port, port_open, wait_for

__all__ = ["LaunchError", "ManagedProcess", "free_port", "port_open", "wait_for"]
