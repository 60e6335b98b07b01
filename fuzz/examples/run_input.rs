//! Runs one input through a target, uninstrumented:
//! `cargo run -p voxline-fuzz --example run_input -- <target> <file>`
//! (with `VOXLINE_FUZZ_DEBUG=1` to see what a structure-aware target decoded).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, file] = args.as_slice() else {
        eprintln!("usage: run_input <target> <file>");
        std::process::exit(2);
    };
    let Some(t) = voxline_fuzz::target(name) else {
        eprintln!("unknown target {name}");
        std::process::exit(2);
    };
    let data = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    (t.run)(&data);
    println!("{name}: {file} ok");
}
