//! Image references as Docker and Compose write them:
//! `[registry[:port]/]path[:tag][@sha256:<64 hex>]`, with lowercase path
//! components. A reference with neither tag nor digest gets the tag
//! [`crate::defaults::IMAGE_TAG`].

use std::fmt;

use crate::defaults;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// The registry as written (`"ghcr.io"`, `"localhost:5000"`), or `None`
    /// for Docker Hub.
    pub registry: Option<String>,
    /// The repository path as written (`"busybox"`, `"library/busybox"`,
    /// `"org/app"`).
    pub path: String,
    /// The tag; `Some("latest")` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// The digest, `"sha256:<64 hex>"`, if pinned.
    pub digest: Option<String>,
}

impl ImageRef {
    /// The name without tag or digest, as written: `[registry/]path`.
    pub fn name(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// The registry to pull from: the one written, or `"docker.io"`.
    pub fn registry_host(&self) -> &str {
        self.registry.as_deref().unwrap_or(defaults::IMAGE_REGISTRY)
    }

    /// The repository in the registry: Docker Hub's official images get
    /// their implicit `library/` prefix.
    pub fn repository(&self) -> String {
        if self.registry.is_none() && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    /// The canonical form: `name:tag`, `name@sha256:…` or `name:tag@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_image_ref(s)
    }
}

/// Parses an image reference.
pub fn parse_image_ref(text: &str) -> Result<ImageRef, String> {
    let bad = |why: &str| format!("invalid image reference {text:?}: {why}");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => {
            let hex = digest
                .strip_prefix("sha256:")
                .ok_or_else(|| bad("the digest must be \"sha256:\" and 64 hex digits"))?;
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(bad(
                    "the digest must be \"sha256:\" and 64 lowercase hex digits",
                ));
            }
            (rest, Some(digest.to_string()))
        }
        None => (text, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphanumeric() || c == '_' || (i > 0 && (c == '.' || c == '-'))
            });
        if !ok {
            return Err(bad(
                "a tag is 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
            ));
        }
    }
    if name.len() > 255 {
        return Err(bad("the name is longer than 255 characters"));
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), path)
        }
        _ => (None, name),
    };
    if let Some(r) = registry {
        let (host, port) = r.split_once(':').unwrap_or((r, ""));
        let host_ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        let port_ok = r.split_once(':').is_none()
            || (!port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok {
            return Err(bad("invalid registry"));
        }
    }
    if path.is_empty() {
        return Err(bad("missing repository name"));
    }
    for component in path.split('/') {
        if !path_component_ok(component) {
            if component.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(bad("repository names must be lowercase"));
            }
            return Err(bad(
                "path components are lowercase letters and digits, separated by '.', '_', '__' or '-'",
            ));
        }
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, None) => Some(defaults::IMAGE_TAG.to_string()),
        (None, Some(_)) => None,
    };
    Ok(ImageRef {
        registry: registry.map(str::to_string),
        path: path.to_string(),
        tag,
        digest,
    })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn path_component_ok(c: &str) -> bool {
    let alnum = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
    let bytes: Vec<char> = c.chars().collect();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep: String = bytes[start..i].iter().collect();
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|ch| ch == '-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn canonical_forms() {
        for (text, canon) in [
            ("busybox", "busybox:latest"),
            ("busybox:1.36", "busybox:1.36"),
            ("library/busybox:latest", "library/busybox:latest"),
            ("ghcr.io/org/app:v1.2.3", "ghcr.io/org/app:v1.2.3"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("my_app__x-y.z", "my_app__x-y.z:latest"),
        ] {
            assert_eq!(parse_image_ref(text).unwrap().to_string(), canon, "{text}");
        }
        let pinned = parse_image_ref(&format!("busybox@{D}")).unwrap();
        assert_eq!(pinned.to_string(), format!("busybox@{D}"));
        assert_eq!(pinned.tag, None);
        let both = parse_image_ref(&format!("busybox:1@{D}")).unwrap();
        assert_eq!(both.to_string(), format!("busybox:1@{D}"));
    }

    #[test]
    fn registry_and_repository() {
        let r = parse_image_ref("busybox").unwrap();
        assert_eq!(
            (r.registry_host(), r.repository().as_str()),
            ("docker.io", "library/busybox")
        );
        let r = parse_image_ref("ghcr.io/org/app").unwrap();
        assert_eq!(
            (r.registry_host(), r.repository().as_str()),
            ("ghcr.io", "org/app")
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            "bad..name",
            "-x",
            "x/",
            "/x",
            "ghcr.io/",
            "a b",
            "reg:port:x/app",
        ] {
            assert!(parse_image_ref(bad).is_err(), "{bad}");
        }
    }
}
