//! Prints the manifest's JSON Schema: `cargo run -p berth-config --example
//! schema > berth.schema.json`, then point an editor at it with a
//! `#:schema ./berth.schema.json` line at the top of the manifest.

fn main() {
    println!("{}", berth_config::json_schema());
}
