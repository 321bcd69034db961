//! Validation of the names and paths that may end up as command arguments.
//!
//! Grants are checked with these when the config is read; a plan step can only name what the
//! grants name, so every argument a command ever gets has passed through here.

/// A HAST resource, service or timer name: letters, digits, `_`, `-`, `.`, `@`, not starting
/// with `-` (it would read as an option), at most 64 bytes.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if name.is_empty() || name.len() > 64 || !valid_chars || name.starts_with(['-', '.']) {
        return Err(format!(
            "{what} `{name}` is not a valid name (1-64 of A-Z a-z 0-9 _ - . @, not starting with - or .)"
        ));
    }
    Ok(())
}

/// An absolute path with no `.`/`..` components, no repeated or trailing `/`, no white space
/// or control characters, at most 1024 bytes.
pub fn check_path(what: &str, path: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{what} `{path}` {why}"));
    if !path.starts_with('/') {
        return bad("is not an absolute path");
    }
    if path.len() > 1024 {
        return bad("is longer than 1024 bytes");
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains white space or control characters");
    }
    if path != "/"
        && path[1..]
            .split('/')
            .any(|part| matches!(part, "" | "." | ".."))
    {
        return bad("has an empty, `.` or `..` component");
    }
    Ok(())
}

/// A filesystem type: lowercase letters and digits, at most 16 bytes (`ufs`, `ext4`, `xfs`).
pub fn check_fstype(fstype: &str) -> Result<(), String> {
    let valid = !fstype.is_empty()
        && fstype.len() <= 16
        && fstype
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "fstype `{fstype}` is not a filesystem type (lowercase letters and digits)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["test", "mysql-server", "mariadb@main", "r_1.2"] {
            assert!(check_name("n", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-rf",
            ".hidden",
            "a b",
            "a;b",
            "a/b",
            "$(x)",
            &"x".repeat(65),
        ] {
            assert!(check_name("n", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        for good in ["/", "/dev/hast/test", "/hast/test"] {
            assert!(check_path("p", good).is_ok(), "{good}");
        }
        for bad in [
            "dev/x",
            "/a/../etc",
            "/a//b",
            "/a/",
            "/a b",
            "/a\nb",
            "/./a",
        ] {
            assert!(check_path("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fstypes() {
        assert!(check_fstype("ext4").is_ok());
        assert!(check_fstype("ufs").is_ok());
        assert!(check_fstype("UFS").is_err());
        assert!(check_fstype("ufs;rm").is_err());
    }
}
