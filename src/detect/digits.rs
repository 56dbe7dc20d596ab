//! The digit gate: rules without a keyword (cards, IBANs, SSNs, national ids) wake only around
//! runs of digits long enough for them.
//!
//! A *run* is digits joined by single separators (space, `-`, `.`): `4111 1111 1111 1111`,
//! `536-22-8197`. Runs are found 64 bytes at a time from byte-class bitmasks
//! ([`classify::each_digits`]), and only the runs some gate may want are measured at all: the
//! gates' conditions are applied to whole blocks first. Source code is full of long runs no gate
//! wants (a table of decimals `12.6181560478,` holds one per number: 66,000 of them in 8 MiB of
//! Rust), and measuring each was a fifth of a scan of code. A gate that needs a letter before its
//! run (IBAN, UK NINO) is asked only about runs that start after one; a gate that needs a
//! separator in its run (SSN) only where that separator follows a digit nearby; and a run's
//! digits are bounded from its joined bytes before it is measured, so a 13-digit gate (cards)
//! never sees the decimals' runs of 12.

use super::classify;

/// A rule gated on digit runs (`digits = N` and its options in the rule format).
#[derive(Debug, Clone)]
pub(super) struct DigitGate {
    pub rule: usize,
    pub min: usize,
    pub max: usize,
    pub after_letter: bool,
    pub separator: Option<u8>,
}

impl DigitGate {
    fn wants(&self, text: &[u8], run: &DigitRun) -> bool {
        (self.min..=self.max).contains(&run.digits)
            && (!self.after_letter || follows_letter(text, run.start))
            && self.separator.is_none_or(|sep| run.holds(text, sep))
    }
}

/// Every digit gate of a rule set, and which runs any of them may want.
#[derive(Debug, Clone, Default)]
pub(super) struct DigitGates {
    gates: Vec<DigitGate>,
    filter: RunFilter,
}

impl DigitGates {
    pub fn new(gates: Vec<DigitGate>) -> Self {
        let least = |class: fn(&DigitGate) -> bool| {
            gates
                .iter()
                .filter(|gate| class(gate))
                .map(|gate| gate.min)
                .min()
        };
        let filter = RunFilter {
            // A gate with both conditions is filtered by its letter: exact, and cheap.
            after_letter: least(|gate| gate.after_letter),
            separated: least(|gate| !gate.after_letter && gate.separator.is_some()),
            plain: least(|gate| !gate.after_letter && gate.separator.is_none()),
            separators: gates
                .iter()
                .filter(|gate| !gate.after_letter)
                .filter_map(|gate| gate.separator)
                .fold(Separators::default(), Separators::with),
        };
        DigitGates { gates, filter }
    }

    /// Calls `hit(rule, start, end)` for every run of `text` that a gate wants, per gate.
    pub fn each_hit(&self, text: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        digit_runs(text, &self.filter, |run| {
            for gate in &self.gates {
                if gate.wants(text, &run) {
                    hit(gate.rule, run.start, run.end);
                }
            }
        });
    }
}

/// The runs worth measuring: a superset of the runs some gate wants, decided per block from the
/// masks. `None` where no gate is of that kind.
#[derive(Debug, Clone, Default)]
struct RunFilter {
    /// Least digits of a gate with no other condition: every run this long.
    plain: Option<usize>,
    /// Least digits of a gate that needs a letter before its run: runs this long that start
    /// after a letter (or after a letter and one space).
    after_letter: Option<usize>,
    /// Least digits of a gate that needs one of `separators` in its run: runs this long in two
    /// blocks where such a separator follows a digit.
    separated: Option<usize>,
    separators: Separators,
}

impl RunFilter {
    /// Every run of at least `min` digits, whatever its neighbours: the filter of the tests
    /// that check the runs themselves.
    #[cfg(test)]
    fn every(min: usize) -> Self {
        RunFilter {
            plain: Some(min),
            ..RunFilter::default()
        }
    }

    /// The least digits of any run worth measuring.
    fn least(&self) -> Option<usize> {
        [self.plain, self.after_letter, self.separated]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The separators some gate needs in its run.
#[derive(Debug, Clone, Copy, Default)]
struct Separators {
    space: bool,
    dash: bool,
    dot: bool,
}

impl Separators {
    fn with(self, byte: u8) -> Self {
        match byte {
            b' ' => Separators {
                space: true,
                ..self
            },
            b'-' => Separators { dash: true, ..self },
            b'.' => Separators { dot: true, ..self },
            // The rule format admits no other (`digits_separator`).
            _ => self,
        }
    }

    fn has(self, byte: u8) -> bool {
        match byte {
            b' ' => self.space,
            b'-' => self.dash,
            b'.' => self.dot,
            _ => false,
        }
    }
}

/// Whether the byte before `at` (or before one space there) is an ASCII letter.
fn follows_letter(text: &[u8], at: usize) -> bool {
    match at.checked_sub(1).map(|i| (i, text[i])) {
        Some((_, b)) if b.is_ascii_alphabetic() => true,
        Some((i, b' ')) => i
            .checked_sub(1)
            .is_some_and(|j| text[j].is_ascii_alphabetic()),
        _ => false,
    }
}

/// A byte a digit gate allows between two digits ([`classify::each_digits`] marks the same).
const fn is_digit_separator(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.')
}

/// A run of digits joined by single separators, as [`digit_runs`] reports it.
#[derive(Debug, Clone, Copy)]
struct DigitRun {
    start: usize,
    end: usize,
    /// How many of its bytes are digits.
    digits: usize,
    /// Bit `i` set where `start + i` is a separator, for a run measured from the masks (all
    /// but runs longer than a block); `None` for a run read byte by byte.
    separators: Option<u128>,
}

impl DigitRun {
    /// Whether one of the run's separators is `byte` (a separator: rules may only name those).
    /// From the mask, a run costs a byte per separator rather than a byte per byte: a table of
    /// decimals holds one in every run, and the SSN gate asks this of each (it was a tenth of
    /// the digit gate on code).
    fn holds(&self, text: &[u8], byte: u8) -> bool {
        match self.separators {
            Some(mut bits) => {
                while bits != 0 {
                    if text[self.start + bits.trailing_zeros() as usize] == byte {
                        return true;
                    }
                    bits &= bits - 1;
                }
                false
            }
            None => text[self.start..self.end].contains(&byte),
        }
    }
}

/// Calls `found` for the runs of digits joined by single separators (space, dash, dot) that
/// `filter` lets through, each with at least as many digits as the least of its kinds.
///
/// Found 64 bytes at a time from byte-class bitmasks: a byte is *joined* if it is a digit or a
/// separator right after a digit. A run of digits joined by single separators is a run of
/// joined bytes (plus at most one trailing separator) that starts with its first digit, so a
/// run with `min` digits starts a window of at least `min` joined bytes
/// ([`classify::run_starts`]). Most blocks of text have none, and cost a few instructions.
/// A run is measured from the masks too (its end from the joined bits, its digits by a
/// popcount), so a table of numbers costs a few instructions per number, not a few per byte;
/// only a run longer than the two blocks in view is read byte by byte.
fn digit_runs(text: &[u8], filter: &RunFilter, mut found: impl FnMut(DigitRun)) {
    let Some(least) = filter.least() else {
        return;
    };
    let least = least.max(1);
    // The previous block's last byte, as bit 0: whether it was a digit, and whether joined.
    let mut carry = 0;
    let mut carry_joined = 0;
    // Everything before `floor` belongs to a run already reported.
    let mut floor = 0;
    classify::each_digits(text, |base, mask, next_mask| {
        let this = joined(mask, carry);
        carry = mask.0 >> 63;
        let joined_before = std::mem::replace(&mut carry_joined, this >> 63);
        // No run starts here (most blocks of prose, many of code).
        if this != 0 {
            let view = View {
                base,
                joined: u128::from(this) | u128::from(joined(next_mask, carry)) << 64,
                digits: u128::from(mask.0) | u128::from(next_mask.0) << 64,
            };
            // Starts of long enough runs of joined bytes, none inside a run already reported:
            // a few instructions rule out most blocks that hold a digit.
            let starts = classify::run_starts(view.joined, least);
            if classify::starts_from(starts, base, floor) != 0 {
                floor = view.block(text, filter, least, joined_before, floor, &mut found);
            }
        }
    });
}

/// A block's bytes that are digits or separators right after a digit, from its masks of
/// digits and separators and whether the byte before it was a digit.
#[inline(always)]
fn joined((digits, separators): (u64, u64), carry: u64) -> u64 {
    digits | separators & (digits << 1 | carry)
}

/// A block of text and the next one as digit-gate bitmasks (see [`digit_runs`]).
struct View {
    /// The offset of the block's first byte.
    base: usize,
    /// Bytes that are digits or separators right after a digit.
    joined: u128,
    digits: u128,
}

impl View {
    /// Reports the runs from this block that `filter` lets through with at least `least`
    /// digits, none before `floor`, and returns the new floor. Out of line, so that the block
    /// loop stays small: most blocks of prose never come here.
    #[inline(never)]
    fn block(
        &self,
        text: &[u8],
        filter: &RunFilter,
        least: usize,
        joined_before: u64,
        floor: usize,
        found: &mut impl FnMut(DigitRun),
    ) -> usize {
        let starts =
            classify::starts_from(self.wanted(text, filter, joined_before), self.base, floor);
        if starts == 0 {
            return floor;
        }
        self.runs(text, starts, floor, least, found)
    }

    /// The block's bits where a run that `filter` lets through may start (see [`RunFilter`]).
    /// `joined_before` is bit 63 of the previous block's joined bytes.
    fn wanted(&self, text: &[u8], filter: &RunFilter, joined_before: u64) -> u64 {
        let base = self.base;
        let lengths = Lengths::new(self);
        let mut starts = 0;
        if let Some(min) = filter.plain {
            starts |= lengths.at_least(min);
        }
        if let Some(min) = filter.after_letter {
            let this = self.joined as u64;
            // A run's first byte: a few per block at most, each asked about the bytes
            // before it.
            let mut first = lengths.at_least(min) & this & !(this << 1 | joined_before);
            while first != 0 {
                let bit = first & first.wrapping_neg();
                if follows_letter(text, base + bit.trailing_zeros() as usize) {
                    starts |= bit;
                }
                first ^= bit;
            }
        }
        if let Some(min) = filter.separated {
            let candidates = lengths.at_least(min);
            // The view's separators that follow a digit, each asked whether it is one the
            // gates want (a table of decimals has one per number); or a run from this block
            // may go on past the view (through the whole next block), to one not in it.
            if candidates != 0
                && (self.holds_any(text, filter.separators)
                    || (self.joined >> 64) as u64 == u64::MAX)
            {
                starts |= candidates;
            }
        }
        starts
    }

    /// Whether a separator that follows a digit in the view is one of `wanted`.
    fn holds_any(&self, text: &[u8], wanted: Separators) -> bool {
        let mut separators = self.joined & !self.digits;
        while separators != 0 {
            let at = self.base + separators.trailing_zeros() as usize;
            if text.get(at).is_some_and(|&byte| wanted.has(byte)) {
                return true;
            }
            separators &= separators - 1;
        }
        false
    }

    /// Reports the runs at `starts` (the block's bits where a long enough run of joined bytes
    /// starts) that have at least `min` digits, and returns the end of the last run read.
    fn runs(
        &self,
        text: &[u8],
        mut starts: u64,
        mut floor: usize,
        min: usize,
        found: &mut impl FnMut(DigitRun),
    ) -> usize {
        let View {
            base,
            joined,
            digits,
        } = *self;
        loop {
            starts = classify::starts_from(starts, base, floor);
            if starts == 0 {
                return floor;
            }
            let first = starts.trailing_zeros();
            starts &= starts - 1;
            let start = base + first as usize;
            // A lone trailing separator (when `min` is 1).
            if digits >> first & 1 == 0 {
                continue;
            }
            let run = match (!(joined >> first)).trailing_zeros() {
                // The run goes on past the view: read it byte by byte.
                length if first + length >= 128 => {
                    let (end, digits) = run_at(text, start);
                    DigitRun {
                        start,
                        end,
                        digits,
                        separators: None,
                    }
                }
                length => {
                    // Without a trailing separator: the last joined byte that is a digit.
                    let last =
                        127 - (digits & (u128::MAX >> (128 - first - length))).leading_zeros();
                    let run = (u128::MAX >> (127 - last)) & (u128::MAX << first);
                    DigitRun {
                        start,
                        end: base + last as usize + 1,
                        digits: (digits & run).count_ones() as usize,
                        separators: Some((run & !digits) >> first),
                    }
                }
            };
            if run.digits >= min {
                found(run);
            }
            floor = run.end;
        }
    }
}

/// For each byte of a block, how long the runs of digits and of joined bytes from it are, in
/// powers of two: `digits[k]` bit `i` set when bytes `i..i + 2^k` of the view are all digits.
/// Built once per block, so that each kind of gate's length is a shift and an AND away, not
/// a loop of them each ([`classify::run_starts`]).
struct Lengths {
    digits: [u128; LEVELS],
    joined: [u128; LEVELS],
}

/// Runs up to `2^LEVELS - 1` long are read from the levels; longer ones (no shipped gate wants
/// them) with [`classify::run_starts`].
const LEVELS: usize = 4;

impl Lengths {
    #[inline(always)]
    fn new(view: &View) -> Self {
        let (digits, joined) = (view.digits, view.joined);
        let ladder = |mask: u128| {
            let mut levels = [mask; LEVELS];
            for k in 1..LEVELS {
                levels[k] = levels[k - 1] & levels[k - 1] >> (1 << (k - 1));
            }
            levels
        };
        Lengths {
            digits: ladder(digits),
            joined: ladder(joined),
        }
    }

    /// The block's bits where a run with at least `min` digits may start, and more: a run
    /// that long either has them all in a row, or holds a separator and so at least `min + 1`
    /// joined bytes (from its first). The second test is what keeps a table of decimals
    /// (`12.6181560478`: 13 joined bytes, 12 digits) out of a 13-digit gate.
    #[inline(always)]
    fn at_least(&self, min: usize) -> u64 {
        let from = |levels: &[u128; LEVELS], len: usize| {
            if len >= 1 << LEVELS {
                return classify::run_starts(levels[0], len);
            }
            let k = len.max(1).ilog2() as usize;
            (levels[k] & levels[k] >> (len - (1 << k))) as u64
        };
        from(&self.digits, min) | from(&self.joined, min + 1)
    }
}

/// The end and digit count of the run of digits joined by single separators that starts at
/// `start` (a digit), read byte by byte.
fn run_at(text: &[u8], start: usize) -> (usize, usize) {
    let digit = |i: usize| text.get(i).is_some_and(u8::is_ascii_digit);
    let mut end = start + 1;
    let mut count = 1;
    loop {
        if digit(end) {
            end += 1;
            count += 1;
        } else if text.get(end).copied().is_some_and(is_digit_separator) && digit(end + 1) {
            end += 2;
            count += 1;
        } else {
            return (end, count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `digit_runs` must report, by a regex: digits joined by single separators.
    fn regex_digit_runs(text: &str, min: usize) -> Vec<(usize, usize, usize)> {
        static RUNS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"[0-9](?:[ .-]?[0-9])*").expect("regex")
        });
        RUNS.find_iter(text)
            .map(|m| {
                let digits = m.as_str().bytes().filter(u8::is_ascii_digit).count();
                (m.start(), m.end(), digits)
            })
            .filter(|&(_, _, digits)| digits >= min)
            .collect()
    }

    /// `digit_runs` as `(start, end, digits)`, each run's `holds` checked against its bytes.
    fn runs_of(text: &str, min: usize) -> Vec<(usize, usize, usize)> {
        let mut found = Vec::new();
        digit_runs(text.as_bytes(), &RunFilter::every(min), |run| {
            for byte in [b' ', b'-', b'.'] {
                let expect = text.as_bytes()[run.start..run.end].contains(&byte);
                assert_eq!(
                    run.holds(text.as_bytes(), byte),
                    expect,
                    "{run:?} in {text:?}"
                );
            }
            found.push((run.start, run.end, run.digits));
        });
        found
    }

    #[test]
    fn digit_runs_are_found_wherever_they_sit() {
        let pieces = [
            "4111 1111 1111 1111",
            "12-34",
            "536-22-8197",
            "2024.01.02",
            "1 2",
            "x",
        ];
        for min in [6, 8, 13] {
            for lead in 0..40 {
                for (i, piece) in pieces.iter().enumerate() {
                    let text = format!(
                        "{}{piece} and {} then {}",
                        "ab ".repeat(lead / 3) + &"z".repeat(lead % 3),
                        pieces[(i + 1) % pieces.len()],
                        "word ".repeat(lead % 7)
                    );
                    let found = runs_of(&text, min);
                    assert_eq!(found, regex_digit_runs(&text, min), "min {min}: {text:?}");
                }
            }
        }
    }

    #[test]
    fn digit_runs_across_blocks_agree_with_a_regex() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..400usize {
            // Digit-heavy text of every length around a few blocks, separators doubled too.
            let text: String = (0..1 + round % 300)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(b"0123456789 .-x"[(state % 14) as usize])
                })
                .collect();
            for min in [1, 2, 6, 19, 64, 70] {
                let found = runs_of(&text, min);
                assert_eq!(found, regex_digit_runs(&text, min), "min {min}: {text:?}");
            }
        }
        // Runs longer than the two blocks the masks cover, from every offset in a block.
        for lead in 0..70 {
            for run in ["7".repeat(300), "12-".repeat(90) + "4", "9 ".repeat(140)] {
                let text = format!("{}{run}. z 55", "a".repeat(lead));
                for min in [1, 6, 13, 70] {
                    let found = runs_of(&text, min);
                    assert_eq!(found, regex_digit_runs(&text, min), "min {min}: {text:?}");
                }
            }
        }
        for b in 0..=255u8 {
            let mut separators = 0;
            classify::each_digits(&[b; classify::BLOCK], |_, (_, s), _| separators |= s);
            assert_eq!(separators != 0, is_digit_separator(b), "{b:#x}");
        }
    }

    /// The runs a filter lets through, as `(start, end, digits)`.
    fn filtered(text: &str, filter: &RunFilter) -> Vec<(usize, usize, usize)> {
        let mut found = Vec::new();
        digit_runs(text.as_bytes(), filter, |run| {
            found.push((run.start, run.end, run.digits))
        });
        found
    }

    #[test]
    fn the_filter_lets_through_every_run_a_gate_of_its_kind_wants() {
        // Random text of digits, separators, letters and other bytes, around a few blocks:
        // for each kind of gate alone, the runs let through must include every run such a
        // gate wants (by the regex and the gate's own check), and be runs.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for round in 0..600usize {
            let alphabet: &[u8] = match round % 3 {
                0 => b"0123456789 .-xQ,",
                1 => b"0123456789-- a",
                _ => b"01 .Z",
            };
            let text: String = (0..1 + round % 400)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(alphabet[(state % alphabet.len() as u64) as usize])
                })
                .collect();
            let bytes = text.as_bytes();
            for min in [1, 3, 6, 9] {
                let every = regex_digit_runs(&text, min);
                let kinds: [(RunFilter, &dyn Fn(usize) -> bool); 4] = [
                    (RunFilter::every(min), &|_| true),
                    (
                        RunFilter {
                            after_letter: Some(min),
                            ..RunFilter::default()
                        },
                        &|start| follows_letter(bytes, start),
                    ),
                    (
                        RunFilter {
                            separated: Some(min),
                            separators: Separators::default().with(b'-'),
                            ..RunFilter::default()
                        },
                        &|start| {
                            every
                                .iter()
                                .any(|r| r.0 == start && text[r.0..r.1].contains('-'))
                        },
                    ),
                    (
                        RunFilter {
                            separated: Some(min),
                            separators: Separators::default().with(b' ').with(b'.'),
                            ..RunFilter::default()
                        },
                        &|start| {
                            every
                                .iter()
                                .any(|r| r.0 == start && text[r.0..r.1].contains([' ', '.']))
                        },
                    ),
                ];
                for (filter, wanted) in kinds {
                    let found = filtered(&text, &filter);
                    for run in &found {
                        assert!(
                            every.contains(run),
                            "{run:?} is no run: {filter:?} {text:?}"
                        );
                    }
                    for run in every.iter().filter(|r| wanted(r.0)) {
                        assert!(found.contains(run), "{run:?} missed: {filter:?} {text:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_separated_run_longer_than_the_view_is_let_through() {
        // The only dash is more than two blocks past the run's start.
        for lead in 0..70 {
            let text = format!("{}{}-5 x", "a ".repeat(lead), "1.2".repeat(60));
            let filter = RunFilter {
                separated: Some(9),
                separators: Separators::default().with(b'-'),
                ..RunFilter::default()
            };
            assert_eq!(
                filtered(&text, &filter),
                regex_digit_runs(&text, 9),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_table_of_decimals_wakes_no_gate_that_wants_a_letter_or_a_dash() {
        let table = "    12.6181560478, 0.5772156649, 2.7182818284,\n".repeat(100);
        let gates = |min, after_letter, separator| {
            DigitGates::new(vec![DigitGate {
                rule: 0,
                min,
                max: usize::MAX,
                after_letter,
                separator,
            }])
        };
        let mut measured = 0;
        for gates in [gates(6, true, None), gates(6, false, Some(b'-'))] {
            digit_runs(table.as_bytes(), &gates.filter, |_| measured += 1);
        }
        assert_eq!(measured, 0);
        // Nor is any number a start for a card's 13 digits: each has 12, and 13 bytes with
        // its dot.
        let (mut carry, mut twelve) = (0, 0);
        classify::each_digits(table.as_bytes(), |base, mask, next| {
            let this = joined(mask, carry);
            carry = mask.0 >> 63;
            let view = View {
                base,
                joined: u128::from(this) | u128::from(joined(next, carry)) << 64,
                digits: u128::from(mask.0) | u128::from(next.0) << 64,
            };
            let lengths = Lengths::new(&view);
            assert_eq!(lengths.at_least(13), 0, "block at {base}");
            twelve += lengths.at_least(12).count_ones();
        });
        // Where 12 would do: the first number of each line (the others have 11 digits).
        assert_eq!(twelve, 100);
        // Without a condition, each number is a run.
        gates(6, false, None).each_hit(table.as_bytes(), |_, _, _| measured += 1);
        assert_eq!(measured, 300);
    }
}
