//! The ACPI power button. The kernel does not signal PID 1 when it is
//! pressed (QEMU's `system_powerdown`, a hypervisor's shutdown, a real
//! button); the press arrives as a KEY_POWER event on the button's input
//! device, so berth reads that device.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `struct input_event` on 64-bit Linux: a timeval, then type, code, value.
const EVENT_SIZE: usize = 24;
const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;

/// The names of input devices that are power buttons.
pub fn is_power_button(name: &str) -> bool {
    matches!(name.trim(), "Power Button" | "ACPI Power Button")
}

/// Whether the input device `eventN` is a power button, from sysfs.
pub fn sysfs_is_power_button(event: &str) -> bool {
    let p = Path::new("/sys/class/input")
        .join(event)
        .join("device/name");
    std::fs::read_to_string(p).is_ok_and(|n| is_power_button(&n))
}

/// Whether a buffer of raw input events holds a power key press.
pub fn has_power_press(buf: &[u8]) -> bool {
    buf.chunks_exact(EVENT_SIZE).any(|ev| {
        let kind = u16::from_ne_bytes([ev[16], ev[17]]);
        let code = u16::from_ne_bytes([ev[18], ev[19]]);
        let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
        kind == EV_KEY && code == KEY_POWER && value == 1
    })
}

/// Waits for a press on the device `/dev/input/<event>`. Returns when one
/// arrives, or with an error if the device goes away.
pub async fn wait_press(event: &str) -> std::io::Result<()> {
    let path = Path::new("/dev/input").join(event);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)?;
    let fd = crate::sys::async_fd(file)?;
    let mut buf = [0u8; EVENT_SIZE * 16];
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|f| std::io::Read::read(&mut f.get_ref(), &mut buf)) {
            Ok(Ok(0)) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} closed", path.display()),
                ));
            }
            Ok(Ok(n)) if has_power_press(&buf[..n]) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e.extend(kind.to_ne_bytes());
        e.extend(code.to_ne_bytes());
        e.extend(value.to_ne_bytes());
        e
    }

    #[test]
    fn a_press_is_found_among_other_events() {
        let mut buf = event(0, 0, 0); // EV_SYN
        buf.extend(event(EV_KEY, KEY_POWER, 1));
        buf.extend(event(0, 0, 0));
        assert!(has_power_press(&buf));
    }

    #[test]
    fn releases_and_other_keys_are_ignored() {
        let mut buf = event(EV_KEY, KEY_POWER, 0);
        buf.extend(event(EV_KEY, 28, 1));
        assert!(!has_power_press(&buf));
    }

    #[test]
    fn device_names() {
        assert!(is_power_button("Power Button\n"));
        assert!(!is_power_button("Sleep Button"));
    }
}
