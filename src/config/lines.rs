//! Key path → line index. serde_yaml values carry no positions, so the text is walked once
//! more with yaml-rust2's event parser, which does.

use std::collections::HashMap;

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::Marker,
};

use super::problem::{index_path, key_path};

/// Maps key paths (`routes[2].to[0]`) to the 1-based line where that key or list item starts.
/// Built from the first YAML document of a file; used to put lines on problems, and available
/// to later checks (such as the policy compiler) through [`super::Loaded::lines`].
#[derive(Debug, Clone, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

/// Where the walk is inside one collection.
#[derive(Debug)]
enum Frame {
    Map { path: String, state: MapState },
    Seq { path: String, next: usize },
}

#[derive(Debug)]
enum MapState {
    AwaitKey,
    AwaitValue(String),
    /// Inside a mapping or sequence used as a key (legal YAML, never valid config).
    InComplexKey,
}

#[derive(Debug, Default)]
struct Walk {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

// === impl LineIndex ===

impl LineIndex {
    /// Indexes `text`. Best effort: text the event parser rejects yields the part indexed
    /// before the error (serde_yaml reports the syntax error itself).
    pub fn build(text: &str) -> LineIndex {
        let mut walk = Walk::default();
        let mut parser = Parser::new_from_str(text);
        // An error only truncates the index; it is reported by serde_yaml with its line.
        let _ = parser.load(&mut walk, false);
        LineIndex { lines: walk.lines }
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut current = path;
        loop {
            if let Some(line) = self.lines.get(current) {
                return Some(*line);
            }
            if current.is_empty() {
                return None;
            }
            current = parent(current);
        }
    }
}

fn parent(path: &str) -> &str {
    let cut = if path.ends_with(']') {
        path.rfind('[')
    } else {
        path.rfind('.')
    };
    cut.map_or("", |i| &path[..i])
}

// === impl Walk ===

impl Walk {
    /// The path of a node starting now, or None when the node is a mapping key.
    fn node_path(
        &mut self,
        is_collection: bool,
        scalar: Option<&str>,
        line: usize,
    ) -> Option<String> {
        let Some(top) = self.stack.last_mut() else {
            return Some(String::new());
        };
        match top {
            Frame::Map { path, state } => match state {
                MapState::AwaitKey => {
                    match scalar {
                        Some(key) if !is_collection => {
                            let child = key_path(path, key);
                            self.lines.entry(child).or_insert(line);
                            *state = MapState::AwaitValue(key.to_owned());
                        }
                        _ if is_collection => *state = MapState::InComplexKey,
                        _ => *state = MapState::AwaitValue("?".to_owned()),
                    }
                    None
                }
                MapState::AwaitValue(key) => {
                    let child = key_path(path, key);
                    if !is_collection {
                        *state = MapState::AwaitKey;
                    }
                    Some(child)
                }
                MapState::InComplexKey => Some("?".to_owned()),
            },
            Frame::Seq { path, next } => {
                let child = index_path(path, *next);
                self.lines.entry(child.clone()).or_insert(line);
                if !is_collection {
                    *next += 1;
                }
                Some(child)
            }
        }
    }

    fn collection_start(&mut self, is_map: bool, line: usize) {
        let path = self
            .node_path(true, None, line)
            .unwrap_or_else(|| "?".to_owned());
        self.stack.push(if is_map {
            Frame::Map {
                path,
                state: MapState::AwaitKey,
            }
        } else {
            Frame::Seq { path, next: 0 }
        });
    }

    fn collection_end(&mut self) {
        self.stack.pop();
        match self.stack.last_mut() {
            Some(Frame::Map { state, .. }) => {
                *state = match state {
                    MapState::InComplexKey => MapState::AwaitValue("?".to_owned()),
                    _ => MapState::AwaitKey,
                }
            }
            Some(Frame::Seq { next, .. }) => *next += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Walk {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(value, ..) => {
                self.node_path(false, Some(&value), line);
            }
            Event::Alias(_) => {
                self.node_path(false, None, line);
            }
            Event::MappingStart(..) => self.collection_start(true, line),
            Event::SequenceStart(..) => self.collection_start(false, line),
            Event::MappingEnd | Event::SequenceEnd => self.collection_end(),
            _ => {}
        }
    }
}
