//! `voxline-edge-bench [--iterations N] [--rounds R] [--warmup W]`: prints one
//! line of JSON with the median over rounds of ns per request.
//! `voxline-edge-bench --case password [--rounds R]`: the cost of one CodeB
//! password verification instead (docs/bench.md). Built natively
//! and for wasm32-wasip1; `cargo xtask bench` runs both (see lib.rs).

fn main() {
    let mut iterations = 2_000;
    let mut rounds = 5;
    let mut warmup = 500;
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--case password [--rounds R]`: one CodeB password verification.
    if args.first().map(String::as_str) == Some("--case") {
        if args.get(1).map(String::as_str) != Some("password") {
            eprintln!("usage: voxline-edge-bench --case password [--rounds R]");
            std::process::exit(2);
        }
        let rounds = match args.get(2).map(String::as_str) {
            Some("--rounds") => args.get(3).and_then(|v| v.parse().ok()).unwrap_or(0),
            _ => 9,
        };
        if rounds == 0 {
            eprintln!("usage: voxline-edge-bench --case password [--rounds R]");
            std::process::exit(2);
        }
        println!("{}", voxline_edge_bench::password_verify(rounds));
        return;
    }
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<usize>().ok());
        let Some(value) = value else {
            eprintln!("usage: voxline-edge-bench [--iterations N] [--rounds R] [--warmup W]");
            std::process::exit(2);
        };
        match flag.as_str() {
            "--iterations" => iterations = value,
            "--rounds" => rounds = value,
            "--warmup" => warmup = value,
            _ => {
                eprintln!("unknown flag {flag}");
                std::process::exit(2);
            }
        }
    }
    let report = voxline_edge_bench::run(iterations, rounds, warmup);
    println!("{}", report.to_json());
}
