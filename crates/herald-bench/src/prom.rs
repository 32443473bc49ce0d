//! Reading Herald's `/metrics` (Prometheus text) from a scenario.

/// The value of series `name` summed over its label sets (one per app), or `None` when the text
/// has no such series.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    let values = text.lines().filter_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('{').and_then(|r| r.split_once("} ")).map(|(_, v)| v))?;
        rest.trim().parse::<f64>().ok()
    });
    values.fold(None, |total, v| Some(total.unwrap_or(0.0) + v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_labelled_series_are_summed() {
        let text = "# HELP herald_connections x\nherald_connections 12\nherald_connects_total 40\n";
        assert_eq!(sum(text, "herald_connections"), Some(12.0));
        assert_eq!(sum(text, "herald_kicks_total"), None);
        let labelled = "herald_connections{app=\"a\"} 2\nherald_connections{app=\"b\"} 3\nherald_connections_x 9\n";
        assert_eq!(sum(labelled, "herald_connections"), Some(5.0));
    }
}
