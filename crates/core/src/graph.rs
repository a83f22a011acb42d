//! Building a live translator graph from a volfile, checked against a registry of types.

use std::collections::HashMap;
use std::sync::Arc;

use crate::options::{OptionSpec, Options};
use crate::volfile::{Volfile, VolfileError};
use crate::xlator::{Event, EventReceiver, EventSender, XlatorRef};

/// What a translator type's constructor receives.
pub struct XlatorInit {
    /// The instance name from the volfile.
    pub name: String,
    /// Validated options, defaults filled in.
    pub options: Options,
    /// The already-built subvolumes, in volfile order.
    pub children: Vec<XlatorRef>,
    /// Where the instance reports events it raises itself (see [`Graph::take_events`]).
    pub events: EventSender,
}

/// A kind of translator that volfiles can name in `type`.
pub trait XlatorType: Send + Sync {
    /// The name volfiles use, e.g. `storage/posix`.
    fn type_name(&self) -> &'static str;
    /// One line saying what it does.
    fn description(&self) -> &'static str;
    /// The options it accepts.
    fn options(&self) -> &'static [OptionSpec];
    /// How many subvolumes it accepts (inclusive bounds).
    fn children(&self) -> (usize, usize);
    /// Builds an instance; the error says why it cannot run (e.g. a bad brick directory).
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String>;
}

/// The translator types a process knows, by name.
#[derive(Default)]
pub struct Registry {
    types: HashMap<&'static str, Arc<dyn XlatorType>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a type (replacing one of the same name).
    pub fn register(&mut self, t: Arc<dyn XlatorType>) {
        self.types.insert(t.type_name(), t);
    }

    /// The type called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn XlatorType>> {
        self.types.get(name)
    }

    /// Every type name, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.types.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

/// A built graph: every translator by name, and which is on top.
pub struct Graph {
    nodes: Vec<XlatorRef>,
    types: Vec<String>,
    /// Each translator's subvolume names, in volfile order (the graph's shape, with
    /// `nodes` and `types`).
    subvolumes: Vec<Vec<String>>,
    /// Each translator's current options (as built, then as reconfigured).
    options: parking_lot::Mutex<Vec<Options>>,
    /// Held while a reconfigure runs, so two never interleave.
    reconfiguring: tokio::sync::Mutex<()>,
    events: parking_lot::Mutex<Option<EventReceiver>>,
    parents: HashMap<String, Vec<usize>>,
    top: usize,
}

impl Graph {
    /// Checks `vf` against `registry` without starting anything: known types, subvolume
    /// counts, option names and values, each refusal with its line.
    pub fn check(vf: &Volfile, registry: &Registry) -> Result<(), VolfileError> {
        vf.check_references()?;
        for v in &vf.volumes {
            check_one(v, registry)?;
        }
        Ok(())
    }

    /// Checks `vf` against `registry` and builds every translator, children first. Unknown
    /// types, unknown options, bad values, wrong subvolume counts and translators that fail
    /// to start are refused with the line they concern.
    pub fn build(vf: &Volfile, registry: &Registry) -> Result<Graph, VolfileError> {
        Graph::check(vf, registry)?;
        let (events, events_rx) = EventSender::channel();
        let mut built: HashMap<&str, XlatorRef> = HashMap::new();
        let mut options: Vec<Options> = vec![Options::default(); vf.volumes.len()];
        let mut order: Vec<usize> = Vec::new();
        // Children before parents: repeat passes until everything is built (acyclic).
        while order.len() < vf.volumes.len() {
            let before = order.len();
            for (i, v) in vf.volumes.iter().enumerate() {
                if built.contains_key(v.name.as_str())
                    || !v.subvolumes.iter().all(|s| built.contains_key(s.as_str()))
                {
                    continue;
                }
                let (x, o) = build_one(v, registry, &built, &events)?;
                built.insert(v.name.as_str(), x);
                options[i] = o;
                order.push(i);
            }
            if order.len() == before {
                return Err(VolfileError {
                    line: 1,
                    reason: "graph has a cycle".into(),
                });
            }
        }
        let nodes: Vec<XlatorRef> = vf
            .volumes
            .iter()
            .map(|v| built[v.name.as_str()].clone())
            .collect();
        let mut parents: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, v) in vf.volumes.iter().enumerate() {
            for s in &v.subvolumes {
                parents.entry(s.clone()).or_default().push(i);
            }
        }
        Ok(Graph {
            top: nodes.len() - 1,
            nodes,
            types: vf.volumes.iter().map(|v| v.type_name.clone()).collect(),
            subvolumes: vf.volumes.iter().map(|v| v.subvolumes.clone()).collect(),
            options: parking_lot::Mutex::new(options),
            reconfiguring: tokio::sync::Mutex::new(()),
            events: parking_lot::Mutex::new(Some(events_rx)),
            parents,
        })
    }

    /// The top translator, where front ends send FOPs.
    pub fn top(&self) -> &XlatorRef {
        &self.nodes[self.top]
    }

    /// The translator called `name`.
    pub fn get(&self, name: &str) -> Option<&XlatorRef> {
        self.nodes.iter().find(|x| x.name() == name)
    }

    /// Every translator in volfile order.
    pub fn nodes(&self) -> &[XlatorRef] {
        &self.nodes
    }

    /// True when some translator in the graph is of type `type_name` (e.g.
    /// `protocol/client`).
    pub fn has_type(&self, type_name: &str) -> bool {
        self.types.iter().any(|t| t == type_name)
    }

    /// The current options of the first translator of type `type_name` (volfile order),
    /// if the graph has one.
    pub fn options_of_type(&self, type_name: &str) -> Option<Options> {
        let i = self.types.iter().position(|t| t == type_name)?;
        self.options.lock().get(i).cloned()
    }

    /// The events translators raise themselves, to be passed to [`Graph::notify`] by the
    /// graph's owner. `None` after the first call.
    pub fn take_events(&self) -> Option<EventReceiver> {
        self.events.lock().take()
    }

    /// Delivers `event` from translator `from` to its parents, and on upwards as long as
    /// each parent passes it on. Returns what came out of the top of the graph.
    pub async fn notify(&self, from: &str, event: Event) -> Vec<Event> {
        let mut out = Vec::new();
        let top = self.nodes[self.top].name();
        if from == top {
            out.push(event.clone());
        }
        let mut queue = vec![(from.to_string(), event)];
        while let Some((child, ev)) = queue.pop() {
            for &p in self.parents.get(&child).map(Vec::as_slice).unwrap_or(&[]) {
                let parent = &self.nodes[p];
                if let Some(next) = parent.notify(&child, ev.clone()).await {
                    if parent.name() == top {
                        out.push(next.clone());
                    }
                    queue.push((parent.name().to_string(), next));
                }
            }
        }
        out
    }

    /// A statedump: every translator's name and its `dump()`.
    pub fn statedump(&self) -> String {
        let mut out = String::new();
        for x in self.nodes.iter().rev() {
            out.push_str(&format!("[{}]\n", x.name()));
            let d = x.dump();
            if !d.is_empty() {
                out.push_str(&d);
                if !d.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Why a graph built from `vf` would differ in shape from this one (translator
    /// names, types, subvolumes, in volfile order), or `None` when it has the same shape
    /// and only options can differ.
    pub fn shape_change(&self, vf: &Volfile) -> Option<String> {
        if vf.volumes.len() != self.nodes.len() {
            return Some(format!(
                "{} translators instead of {}",
                vf.volumes.len(),
                self.nodes.len()
            ));
        }
        for (i, v) in vf.volumes.iter().enumerate() {
            let name = self.nodes[i].name();
            if v.name != name {
                return Some(format!("translator {:?} where {name:?} was", v.name));
            }
            if v.type_name != self.types[i] {
                return Some(format!(
                    "translator {name:?} is now {} instead of {}",
                    v.type_name, self.types[i]
                ));
            }
            if v.subvolumes != self.subvolumes[i] {
                return Some(format!(
                    "translator {name:?} has subvolumes {:?} instead of {:?}",
                    v.subvolumes, self.subvolumes[i]
                ));
            }
        }
        None
    }

    /// The current options of translator `name`.
    pub fn options_of(&self, name: &str) -> Option<Options> {
        let i = self.nodes.iter().position(|x| x.name() == name)?;
        Some(self.options.lock()[i].clone())
    }

    /// Applies the options of `vf`, a volfile of the same shape as this graph (see
    /// [`Graph::shape_change`]), checked against `registry` first: every translator whose
    /// options differ is [`crate::Xlator::reconfigure`]d, in volfile order, while
    /// the graph keeps serving. A translator that refuses keeps its options and is listed
    /// in [`Reconfigured::refused`]; the others are applied regardless.
    pub async fn reconfigure(
        &self,
        vf: &Volfile,
        registry: &Registry,
    ) -> Result<Reconfigured, ReconfigureError> {
        Graph::check(vf, registry).map_err(ReconfigureError::Invalid)?;
        if let Some(why) = self.shape_change(vf) {
            return Err(ReconfigureError::Shape(why));
        }
        let _one_at_a_time = self.reconfiguring.lock().await;
        let mut wanted = Vec::with_capacity(vf.volumes.len());
        for v in &vf.volumes {
            wanted.push(check_one(v, registry).map_err(ReconfigureError::Invalid)?.1);
        }
        let mut done = Reconfigured::default();
        for (i, new) in wanted.into_iter().enumerate() {
            let old = self.options.lock()[i].clone();
            let keys = old.changed_keys(&new);
            if keys.is_empty() {
                continue;
            }
            let x = &self.nodes[i];
            match x.reconfigure(&new).await {
                Ok(()) => {
                    self.options.lock()[i] = new;
                    done.applied.push((x.name().to_string(), keys));
                }
                Err(why) => done.refused.push((x.name().to_string(), keys, why)),
            }
        }
        Ok(done)
    }

    /// Tears the graph down, top first.
    pub async fn fini(&self) {
        for x in self.nodes.iter().rev() {
            x.fini().await;
        }
    }
}

/// What [`Graph::reconfigure`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Translators reconfigured, each with the option keys that changed.
    pub applied: Vec<(String, Vec<String>)>,
    /// Translators that refused their new options: name, the keys, and why.
    pub refused: Vec<(String, Vec<String>, String)>,
}

/// Why [`Graph::reconfigure`] applied nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconfigureError {
    /// The new volfile does not check against the registry.
    Invalid(VolfileError),
    /// The new volfile's graph has another shape (the text says how): it needs a new
    /// graph, not new options.
    Shape(String),
}

impl std::fmt::Display for ReconfigureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReconfigureError::Invalid(e) => write!(f, "bad volfile: {e}"),
            ReconfigureError::Shape(why) => write!(f, "the graph changed shape: {why}"),
        }
    }
}

impl std::error::Error for ReconfigureError {}

/// Checks one declaration against its type: known type, subvolume count, options.
fn check_one(
    v: &crate::volfile::VolumeDecl,
    registry: &Registry,
) -> Result<(Arc<dyn XlatorType>, Options), VolfileError> {
    let e = |line: usize, reason: String| VolfileError { line, reason };
    let t = registry.get(&v.type_name).ok_or_else(|| {
        e(
            v.type_line,
            format!(
                "unknown translator type {:?} (known: {})",
                v.type_name,
                registry.names().join(", ")
            ),
        )
    })?;
    let (min, max) = t.children();
    let n = v.subvolumes.len();
    if n < min || n > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        let line = if v.subvolumes_line > 0 {
            v.subvolumes_line
        } else {
            v.line
        };
        return Err(e(
            line,
            format!(
                "{} takes {want} subvolume(s), {:?} has {n}",
                v.type_name, v.name
            ),
        ));
    }
    let given: Vec<(String, String)> = v
        .options
        .iter()
        .map(|o| (o.key.clone(), o.value.clone()))
        .collect();
    let options = Options::validate(t.options(), &given).map_err(|(idx, msg)| {
        let line = idx.map(|i| v.options[i].line).unwrap_or(v.line);
        e(
            line,
            format!("volume {:?} ({}): {msg}", v.name, v.type_name),
        )
    })?;
    Ok((t.clone(), options))
}

fn build_one(
    v: &crate::volfile::VolumeDecl,
    registry: &Registry,
    built: &HashMap<&str, XlatorRef>,
    events: &EventSender,
) -> Result<(XlatorRef, Options), VolfileError> {
    let (t, options) = check_one(v, registry)?;
    let kept = options.clone();
    let children = v
        .subvolumes
        .iter()
        .map(|s| built[s.as_str()].clone())
        .collect();
    t.build(XlatorInit {
        name: v.name.clone(),
        options,
        children,
        events: events.clone(),
    })
    .map(|x| (x, kept))
    .map_err(|msg| VolfileError {
        line: v.line,
        reason: format!("volume {:?} ({}): {msg}", v.name, v.type_name),
    })
}
