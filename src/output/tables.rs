//! Text tables for the terminal: `eval`'s per-class accuracy and confusion matrix.

use std::fmt::Write as _;

use crate::data::NUM_CLASSES;
use crate::train::evaluate::Report;

/// Markdown table: class, test images, correct, accuracy.
pub fn per_class(report: &Report, names: &[&str; NUM_CLASSES]) -> String {
    let mut out = String::from("| class | images | correct | accuracy |\n|---|---|---|---|\n");
    for (c, acc) in report.per_class_accuracy().iter().enumerate() {
        let images: u64 = report.confusion[c].iter().sum();
        let _ = writeln!(
            out,
            "| {} | {images} | {} | {:.2}% |",
            label(c, names),
            report.confusion[c][c],
            acc * 100.0
        );
    }
    out
}

/// The confusion matrix, rows = true class, columns = predicted, right-aligned counts.
pub fn confusion(report: &Report, names: &[&str; NUM_CLASSES]) -> String {
    let labels: Vec<String> = (0..NUM_CLASSES).map(|c| label(c, names)).collect();
    let first = labels.iter().map(String::len).max().unwrap_or(1).max(10);
    let width = report
        .confusion
        .iter()
        .flatten()
        .map(|n| n.to_string().len())
        .max()
        .unwrap_or(1)
        .max(2);
    let mut out = format!("{:<first$}", "true \\ pred");
    for c in 0..NUM_CLASSES {
        let _ = write!(out, " {c:>width$}");
    }
    out.push('\n');
    for (c, row) in report.confusion.iter().enumerate() {
        let _ = write!(out, "{:<first$}", labels[c]);
        for n in row {
            let _ = write!(out, " {n:>width$}");
        }
        out.push('\n');
    }
    out
}

/// `7` for digits, `6 Shirt` for named classes.
fn label(c: usize, names: &[&str; NUM_CLASSES]) -> String {
    if names[c] == c.to_string() {
        names[c].to_string()
    } else {
        format!("{c} {}", names[c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DatasetName;
    use crate::train::evaluate::Evaluation;

    fn report() -> Report {
        let mut confusion = [[0u64; NUM_CLASSES]; NUM_CLASSES];
        for (c, row) in confusion.iter_mut().enumerate() {
            row[c] = 90;
            row[(c + 1) % NUM_CLASSES] = 10;
        }
        let evaluation = Evaluation {
            accuracy: 0.9,
            loss: 0.3,
            images: 1000,
        };
        Report {
            members: vec![evaluation.clone()],
            evaluation,
            confusion,
            mistakes: Vec::new(),
        }
    }

    #[test]
    fn tables_show_counts_and_class_names() {
        let r = report();
        assert!(r.per_class_accuracy().iter().all(|&a| a == 0.9));
        let digits = DatasetName::Mnist.class_names();
        let table = per_class(&r, &digits);
        assert!(table.contains("| 7 | 100 | 90 | 90.00% |"), "{table}");
        let matrix = confusion(&r, &digits);
        let rows: Vec<&str> = matrix.lines().collect();
        assert_eq!(rows.len(), 11);
        assert!(
            rows[1].starts_with("0") && rows[1].contains(" 90 10 "),
            "{matrix}"
        );
        let fashion = confusion(&r, &DatasetName::FashionMnist.class_names());
        assert!(fashion.contains("6 Shirt"), "{fashion}");
        assert!(fashion.contains("9 Ankle boot"), "{fashion}");
    }
}
