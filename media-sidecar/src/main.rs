fn main() { eprintln!("voxline-media-sidecar: not yet implemented (issue 3/4)"); std::process::exit(2); }
