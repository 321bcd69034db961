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

/// The longest HAST resource name hastd accepts: its lexer's `STR` token is copied into a
/// `NAME_MAX` buffer with the terminating NUL (sbin/hastd/token.l, parse.y, hast.h).
pub const MAX_HAST_RESOURCE_BYTES: usize = 254;

/// A HAST resource name as hastd accepts it (sbin/hastd/token.l: `[a-zA-Z0-9.\-_/:\[\]]+`),
/// 1 to 254 bytes: `test`, `data:1`, `tank/vol0`, `hast[0]`. For what Haven reads (`hastctl`
/// output, hook arguments); a name that goes on a command line must also pass
/// [`check_hast_argument`].
pub fn check_hast_resource(what: &str, name: &str) -> Result<(), String> {
    let valid_chars = name.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b':' | b'[' | b']')
    });
    if name.is_empty() || name.len() > MAX_HAST_RESOURCE_BYTES || !valid_chars {
        return Err(format!(
            "{what} `{}` is not a HAST resource name (1-254 of A-Z a-z 0-9 . - _ / : [ ], as \
             hastd accepts)",
            crate::text::escape(&crate::text::clip(name, 300))
        ));
    }
    Ok(())
}

/// A HAST resource name that Haven may put on a command line (`hastctl role <role> <name>`):
/// what hastd accepts ([`check_hast_resource`]), but not starting with `-`, which hastctl's
/// `getopt` would read as an option. hastd itself accepts such a name; Haven only watches it.
pub fn check_hast_argument(what: &str, name: &str) -> Result<(), String> {
    check_hast_resource(what, name)?;
    // Its device node is /dev/hast/<name>, which must be a plain path too.
    if name.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return Err(format!(
            "{what} `{name}` has an empty, `.` or `..` path component, so its device node \
             /dev/hast/{name} would not be a plain path"
        ));
    }
    if name.starts_with('-') {
        return Err(format!(
            "{what} `{name}` starts with `-`, which hastctl would read as an option; Haven \
             watches such a resource but will not name it in a command (rename it in hast.conf)"
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
    fn hast_resources_as_hastd_accepts_them() {
        for good in [
            "test",
            "data:1",
            "tank/vol0",
            "hast[0]",
            "a.b-c_d",
            &"r".repeat(254),
        ] {
            assert!(check_hast_resource("r", good).is_ok(), "{good}");
            assert!(check_hast_argument("r", good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a;b", "$(x)", "a\nb", "é", &"r".repeat(255)] {
            assert!(check_hast_resource("r", bad).is_err(), "{bad}");
        }
        assert!(check_hast_resource("r", "-x").is_ok(), "hastd accepts it");
        assert!(check_hast_resource("r", "../x").is_ok(), "hastd accepts it");
        assert!(check_hast_argument("r", "../x").is_err());
        assert!(check_hast_argument("r", "a//b").is_err());
        let refused = check_hast_argument("r", "-x").unwrap_err();
        assert!(refused.contains("read as an option"), "{refused}");
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
