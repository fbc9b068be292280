//! The README's table of kube-vip's environment variables, rendered from the code
//! ([`super::kubevip::KUBE_VIP_ENV`], [`super::keys::KEYS`], [`super::kubevip::UNSUPPORTED`])
//! and compared with README.md, so the document cannot drift from what vipr does.
//! `VIPR_BLESS_README=1 cargo test -p vipr --bin vipr readme_table` rewrites the README's rows.

use super::kubevip::{find, Class, Harmless, KUBE_VIP_ENV};

/// The rows of the table, one per kube-vip variable, in [`KUBE_VIP_ENV`]'s order.
fn rows() -> Vec<String> {
    KUBE_VIP_ENV
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let n = i + 1;
            match find(name) {
                None => format!("| {n} | `{name}` | implemented | `{name}` |"),
                Some(u) => {
                    let what = match u.class {
                        Class::Warn => "warned".to_string(),
                        Class::Refuse(h) => format!("**refused** {}", refused_unless(h)),
                    };
                    format!("| {n} | `{name}` | {what} | {} |", u.reason)
                }
            }
        })
        .collect()
}

fn refused_unless(h: Harmless) -> String {
    match h {
        Harmless::False => "unless false".into(),
        Harmless::True => "unless true".into(),
        Harmless::OneOf(vs) => format!(
            "unless {}",
            vs.iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Harmless::SameAs(k) => format!("unless the value of `{k}`"),
        Harmless::Never => "(any non-empty value)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Configuration section's table: one row per setting of [`super::super::keys::KEYS`],
    /// no row for anything else.
    #[test]
    fn every_setting_has_a_row_in_the_readme() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let head = "| setting | kube-vip flag | meaning (default) |\n|---|---|---|\n";
        let start = readme.find(head).expect("the settings table") + head.len();
        let end = start + readme[start..].find("\n\n").expect("end of the table");
        let rows: Vec<&str> = readme[start..end]
            .lines()
            .map(|l| l.trim_start_matches("| `").split('`').next().unwrap_or(""))
            .collect();
        let keys: Vec<&str> = super::super::keys::KEYS.iter().map(|k| k.name).collect();
        for k in &keys {
            assert!(
                rows.contains(k),
                "README.md's settings table has no row for {k}"
            );
        }
        for r in &rows {
            assert!(
                keys.contains(r),
                "README.md's settings table has a row for {r}, no setting"
            );
        }
    }

    const HEADER: &str =
        "| # | kube-vip v1.2.3 variable | vipr | reason / vipr key |\n|---|---|---|---|\n";

    #[test]
    fn readme_table_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let start = readme
            .find(HEADER)
            .expect("the table's header in README.md")
            + HEADER.len();
        let len = readme[start..]
            .find("\n\n")
            .expect("a blank line after the table");
        let want = rows().join("\n");
        if readme[start..start + len] == want {
            return;
        }
        if std::env::var_os("VIPR_BLESS_README").is_some() {
            let new = format!("{}{}{}", &readme[..start], want, &readme[start + len..]);
            std::fs::write(path, new).expect("write README.md");
            return;
        }
        let got: Vec<&str> = readme[start..start + len].lines().collect();
        let want: Vec<&str> = want.lines().collect();
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                g, w,
                "README.md's table differs (VIPR_BLESS_README=1 rewrites it)"
            );
        }
        assert_eq!(
            got.len(),
            want.len(),
            "README.md's table has a different number of rows"
        );
    }
}
