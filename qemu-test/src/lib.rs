//! The QEMU harness: boots a berth image, watches its console, drives it.
