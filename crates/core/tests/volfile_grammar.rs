//! Volfiles generated from the grammar (volume blocks, `type`, `option` lines whose values
//! hold spaces, `subvolumes` naming volumes declared before or after, comments, blank lines,
//! indentation, real newlines) must parse to what was generated, with the right line
//! numbers, and `Display` -> `parse` must be the identity. The same texts mutated (a line
//! deleted, duplicated or swapped, the text truncated, junk inserted) must never make the
//! parser panic, and any error must name a line within the text.

use proptest::prelude::*;
use weft_core::volfile::Volfile;

/// One generated volume: name, type, options (unique keys) and subvolume indices.
#[derive(Debug, Clone)]
struct GenVolume {
    name: String,
    type_name: String,
    options: Vec<(String, String)>,
    subvolumes: Vec<usize>,
}

/// Filler placed between lines: nothing, blank lines or comments.
#[derive(Debug, Clone)]
enum Filler {
    Blank(String),
    Comment(String),
}

#[derive(Debug, Clone)]
struct GenFile {
    volumes: Vec<GenVolume>,
    /// Indentation used for each keyword line (cycled through).
    indents: Vec<String>,
    /// Filler lines inserted before each structural line (cycled through).
    fillers: Vec<Vec<Filler>>,
    /// Whether lines end with "\r\n" (which `str::lines` strips too).
    crlf: bool,
}

fn value_strategy() -> impl Strategy<Value = String> {
    // Words separated by single or several spaces or a tab; '#' inside is not a comment.
    (
        "[A-Za-z0-9/._=,:#@+-]{1,8}",
        prop::collection::vec(("[ \t]{1,3}", "[A-Za-z0-9/._=,:#@+-]{1,8}"), 0..4),
    )
        .prop_map(|(first, rest)| {
            let mut s = first;
            for (sep, w) in rest {
                s.push_str(&sep);
                s.push_str(&w);
            }
            s
        })
}

fn gen_file() -> impl Strategy<Value = GenFile> {
    prop::collection::btree_set("[A-Za-z0-9_.:-]{1,10}", 1..6)
        .prop_flat_map(|names| {
            let names: Vec<String> = names.into_iter().collect();
            let n = names.len();
            let vols = names
                .into_iter()
                .map(move |name| {
                    (
                        Just(name),
                        "[a-z]{1,8}/[a-z-]{1,8}",
                        prop::collection::btree_map(
                            "[a-z][a-z0-9.-]{0,10}",
                            value_strategy(),
                            0..4,
                        ),
                        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
                    )
                })
                .collect::<Vec<_>>();
            (
                vols,
                // A rank per volume: subvolumes only of lower rank, so no cycle, while
                // names may be declared later in the file.
                Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
                prop::collection::vec("[ \t]{0,6}", 1..5),
                prop::collection::vec(
                    prop::collection::vec(
                        prop_oneof![
                            "[ \t]{0,4}".prop_map(Filler::Blank),
                            "[ \t]{0,3}#[ -~]{0,20}".prop_map(Filler::Comment),
                        ],
                        0..3,
                    ),
                    1..8,
                ),
                any::<bool>(),
            )
        })
        .prop_map(|(vols, rank, indents, fillers, crlf)| {
            let volumes = vols
                .iter()
                .enumerate()
                .map(|(i, (name, type_name, options, subs))| {
                    let lower: Vec<usize> =
                        (0..vols.len()).filter(|&j| rank[j] < rank[i]).collect();
                    let mut subvolumes = Vec::new();
                    if !lower.is_empty() {
                        for ix in subs {
                            let j = lower[ix.index(lower.len())];
                            if !subvolumes.contains(&j) {
                                subvolumes.push(j);
                            }
                        }
                    }
                    GenVolume {
                        name: name.clone(),
                        type_name: type_name.clone(),
                        options: options.clone().into_iter().collect(),
                        subvolumes,
                    }
                })
                .collect();
            GenFile {
                volumes,
                indents,
                fillers,
                crlf,
            }
        })
}

/// Where each structural line landed (1-based), to check the parser's line numbers.
#[derive(Debug, Default)]
struct Lines {
    volume: Vec<usize>,
    type_: Vec<usize>,
    options: Vec<Vec<usize>>,
    subvolumes: Vec<usize>,
}

fn render(g: &GenFile) -> (String, Lines) {
    let mut out: Vec<String> = Vec::new();
    let mut lines = Lines::default();
    let mut k = 0usize;
    let mut push = |out: &mut Vec<String>, text: String, indent: bool| -> usize {
        for f in &g.fillers[k % g.fillers.len()] {
            out.push(match f {
                Filler::Blank(s) | Filler::Comment(s) => s.clone(),
            });
        }
        let ind = if indent {
            g.indents[k % g.indents.len()].clone()
        } else {
            String::new()
        };
        k += 1;
        out.push(format!("{ind}{text}"));
        out.len()
    };
    for v in &g.volumes {
        lines
            .volume
            .push(push(&mut out, format!("volume {}", v.name), false));
        lines
            .type_
            .push(push(&mut out, format!("type {}", v.type_name), true));
        let mut opts = Vec::new();
        for (key, value) in &v.options {
            opts.push(push(&mut out, format!("option {key} {value}"), true));
        }
        lines.options.push(opts);
        if v.subvolumes.is_empty() {
            lines.subvolumes.push(0);
        } else {
            let names: Vec<&str> = v
                .subvolumes
                .iter()
                .map(|&j| g.volumes[j].name.as_str())
                .collect();
            lines.subvolumes.push(push(
                &mut out,
                format!("subvolumes {}", names.join(" ")),
                true,
            ));
        }
        push(&mut out, "end-volume".into(), false);
    }
    let nl = if g.crlf { "\r\n" } else { "\n" };
    let mut text = out.join(nl);
    text.push_str(nl);
    (text, lines)
}

/// The parse with line numbers cleared, so two parses of different texts compare.
fn without_lines(mut v: Volfile) -> Volfile {
    for d in &mut v.volumes {
        d.line = 0;
        d.type_line = 0;
        d.subvolumes_line = 0;
        for o in &mut d.options {
            o.line = 0;
        }
    }
    v
}

/// Parses possibly broken text: no panic, and an error names a line within the text.
fn check_never_panics(text: &str) -> Result<(), TestCaseError> {
    let n = text.lines().count();
    match Volfile::parse(text) {
        Ok(v) => {
            // Whatever parses still round-trips.
            let shown = v.to_string();
            let again = Volfile::parse(&shown)
                .map_err(|e| TestCaseError::fail(format!("{e} for {shown:?}")))?;
            prop_assert_eq!(again.to_string(), shown);
        }
        Err(e) => {
            prop_assert!(
                e.line >= 1 && e.line <= n.max(1),
                "error line {} outside 1..={} for {:?}: {}",
                e.line,
                n.max(1),
                text,
                e
            );
            prop_assert!(!e.reason.is_empty());
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(prop::sample::Index),
    Duplicate(prop::sample::Index),
    Swap(prop::sample::Index, prop::sample::Index),
    Truncate(prop::sample::Index),
    InsertJunk(prop::sample::Index, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
        any::<prop::sample::Index>().prop_map(Mutation::Duplicate),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| Mutation::Swap(a, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (
            any::<prop::sample::Index>(),
            prop_oneof![
                "\\PC{0,20}",
                "(volume|type|option|subvolumes|end-volume)[ \t]{0,2}[ -~]{0,12}",
                "[ -~\n\r\t]{0,30}",
            ]
        )
            .prop_map(|(i, s)| Mutation::InsertJunk(i, s)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() && !matches!(m, Mutation::InsertJunk(..)) {
        return text.to_string();
    }
    match m {
        Mutation::Delete(i) => {
            lines.remove(i.index(lines.len()));
        }
        Mutation::Duplicate(i) => {
            let i = i.index(lines.len());
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        Mutation::Swap(a, b) => {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
        }
        Mutation::Truncate(i) => {
            let mut cut = i.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            return text[..cut].to_string();
        }
        Mutation::InsertJunk(i, junk) => {
            lines.insert(i.index(lines.len() + 1), junk.clone());
        }
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_volfiles_parse_to_what_was_generated(g in gen_file()) {
        let (text, lines) = render(&g);
        prop_assert!(text.contains('\n'));
        let v = Volfile::parse(&text).map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
        prop_assert_eq!(v.volumes.len(), g.volumes.len());
        for (i, (d, gv)) in v.volumes.iter().zip(&g.volumes).enumerate() {
            prop_assert_eq!(&d.name, &gv.name);
            prop_assert_eq!(&d.type_name, &gv.type_name);
            prop_assert_eq!(d.line, lines.volume[i]);
            prop_assert_eq!(d.type_line, lines.type_[i]);
            prop_assert_eq!(d.subvolumes_line, lines.subvolumes[i]);
            prop_assert_eq!(d.options.len(), gv.options.len());
            for (j, (o, (key, value))) in d.options.iter().zip(&gv.options).enumerate() {
                prop_assert_eq!(&o.key, key);
                prop_assert_eq!(&o.value, value, "spaces inside a value are kept");
                prop_assert_eq!(o.line, lines.options[i][j]);
            }
            let subs: Vec<&str> = gv.subvolumes.iter().map(|&j| g.volumes[j].name.as_str()).collect();
            prop_assert_eq!(d.subvolumes.iter().map(String::as_str).collect::<Vec<_>>(), subs);
        }
        prop_assert_eq!(&v.top().unwrap().name, &g.volumes.last().unwrap().name);

        // Display -> parse is the identity (up to line numbers), and Display is stable.
        let shown = v.to_string();
        let again = Volfile::parse(&shown).map_err(|e| TestCaseError::fail(format!("{e} in {shown:?}")))?;
        prop_assert_eq!(again.to_string(), shown.clone());
        prop_assert_eq!(without_lines(again), without_lines(v));
    }

    #[test]
    fn mutated_volfiles_never_panic_and_errors_name_a_line(
        g in gen_file(),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        let (mut text, _) = render(&g);
        for m in &muts {
            text = apply(&text, m);
            check_never_panics(&text)?;
        }
    }

    #[test]
    fn a_duplicated_option_or_type_line_is_refused_at_the_copy(g in gen_file(), pick in any::<prop::sample::Index>()) {
        let (text, lines) = render(&g);
        // Every type line and every option line: duplicating it must be refused at the copy.
        let mut candidates: Vec<usize> = lines.type_.clone();
        candidates.extend(lines.options.iter().flatten());
        candidates.extend(lines.subvolumes.iter().filter(|&&l| l != 0));
        let at = candidates[pick.index(candidates.len())];
        let mut ls: Vec<&str> = text.lines().collect();
        let copy = ls[at - 1];
        ls.insert(at, copy);
        let broken = ls.join("\n");
        let e = Volfile::parse(&broken).expect_err("a duplicated line must be refused");
        prop_assert_eq!(e.line, at + 1, "{}", e);
        prop_assert!(e.reason.contains("twice"), "{}", e);
    }
}
