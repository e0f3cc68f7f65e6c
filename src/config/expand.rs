//! `${VAR}` expansion in config string values.
//!
//! One pass, left to right: `${NAME}` (NAME = `[A-Za-z_][A-Za-z0-9_]*`) is replaced
//! by the variable's value, `$${` is a literal `${`, and any other `$` is kept as is,
//! except that a whole value of the form `$NAME` is refused (`BareName`): it is
//! nearly always a forgotten `${NAME}`, and would otherwise be sent as the literal
//! string (an API key `"$OPENAI_API_KEY"`).
//! Substituted values are not expanded again, so a secret containing `${` stays
//! intact. The lookup is a parameter so tests need not touch the process
//! environment. Runs only at load time.

/// Why a value could not be expanded; `validate.rs` adds the key and file.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ExpandError {
    /// `${NAME}` names a variable that is not set.
    Unset(String),
    /// `${` without a closing `}`.
    Unterminated,
    /// `${...}` whose content is not a variable name.
    BadName(String),
    /// The whole value is `$NAME`: a reference without braces.
    BareName(String),
}

/// Expands `${VAR}` references in `value` through `lookup`.
pub(super) fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    if !value.contains('$') {
        return Ok(value.to_owned());
    }
    if let Some(name) = value.strip_prefix('$').filter(|n| is_var_name(n)) {
        return Err(ExpandError::BareName(name.to_owned()));
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(body) = after.strip_prefix("${") {
            let (name, tail) = body.split_once('}').ok_or(ExpandError::Unterminated)?;
            if !is_var_name(name) {
                return Err(ExpandError::BadName(name.to_owned()));
            }
            let found = lookup(name).ok_or_else(|| ExpandError::Unset(name.to_owned()))?;
            out.push_str(&found);
            rest = tail;
        } else {
            out.push('$');
            rest = after.get(1..).unwrap_or_default();
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".to_owned()),
            "B_2" => Some("beta".to_owned()),
            "EMPTY" => Some(String::new()),
            "TRICKY" => Some("${A}".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn a_whole_value_of_dollar_name_is_refused_as_a_forgotten_brace() {
        assert_eq!(expand("$OPENAI_API_KEY", &env), Err(ExpandError::BareName("OPENAI_API_KEY".into())));
        // `$` elsewhere in a value stays literal.
        assert_eq!(expand("pa$$word", &env), Ok("pa$$word".to_owned()));
        assert_eq!(expand("$1abc", &env), Ok("$1abc".to_owned()));
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(expand("no refs $ here", &env), Ok("no refs $ here".to_owned()));
    }

    #[test]
    fn references_are_replaced_anywhere_in_the_value() {
        assert_eq!(expand("${A}", &env), Ok("alpha".to_owned()));
        assert_eq!(expand("x-${A}-${B_2}-y", &env), Ok("x-alpha-beta-y".to_owned()));
        assert_eq!(expand("[${EMPTY}]", &env), Ok("[]".to_owned()));
    }

    #[test]
    fn double_dollar_escapes_a_literal_reference() {
        assert_eq!(expand("$${A} and ${A}", &env), Ok("${A} and alpha".to_owned()));
    }

    #[test]
    fn substituted_values_are_not_expanded_again() {
        assert_eq!(expand("${TRICKY}", &env), Ok("${A}".to_owned()));
    }

    #[test]
    fn unset_unterminated_and_malformed_references_are_errors() {
        assert_eq!(expand("${NOPE}", &env), Err(ExpandError::Unset("NOPE".to_owned())));
        assert_eq!(expand("abc ${A", &env), Err(ExpandError::Unterminated));
        assert_eq!(expand("${1X}", &env), Err(ExpandError::BadName("1X".to_owned())));
        assert_eq!(expand("${}", &env), Err(ExpandError::BadName(String::new())));
        assert_eq!(expand("${A:-x}", &env), Err(ExpandError::BadName("A:-x".to_owned())));
    }

    #[test]
    fn non_ascii_text_around_references_survives() {
        assert_eq!(expand("é${A}ü$", &env), Ok("éalphaü$".to_owned()));
    }
}
