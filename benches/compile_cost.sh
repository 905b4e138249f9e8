#!/usr/bin/env bash
# What `#[cached]` costs at compile time: 50 functions with the attribute against the same 50
# functions without it, both crates linking cache-runtime, built non-incrementally in debug
# (what a developer's `cargo build` pays after touching the file).
#
#   bash benches/compile_cost.sh [ROUNDS] [distinct]
#
# Default: 5 rounds, the two crates in turns, the functions returning three types among them
# (u64, String, Vec<u64>). With `distinct`, each function returns a type of its own (a
# newtype around the same value, serde-derived in both crates), as in an application whose
# functions each return their own struct: what is generated per value type counts 50 times.
#
# The crates are generated under target/compile-cost and share one target directory, so the
# dependencies are built once, before the rounds; each round touches a crate's main.rs and
# times `cargo build` of that crate alone. Prints each round and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
rounds=${1:-5}
distinct=${2:-}
dir="$root/target/compile-cost${distinct:+-distinct}"
mkdir -p "$dir"

functions() { # $1 = attribute line for each function (empty for the plain crate)
    local attr=$1 i
    for i in $(seq 0 49); do
        if [ -n "$distinct" ]; then
            printf '#[derive(Clone, serde::Serialize, serde::Deserialize)]\n'
            case $((i % 3)) in
            0) printf 'pub struct R%d(pub u64);\n\n' "$i" ;;
            1) printf 'pub struct R%d(pub String);\n\n' "$i" ;;
            2) printf 'pub struct R%d(pub Vec<u64>);\n\n' "$i" ;;
            esac
            case $((i % 3)) in
            0) printf '%s\npub fn f%d(n: u64) -> R%d {\n    R%d(n.wrapping_mul(%d))\n}\n\n' "$attr" "$i" "$i" "$i" "$i" ;;
            1) printf '%s\npub fn f%d(name: &str, n: u32) -> R%d {\n    R%d(format!("{name} {n} %d"))\n}\n\n' "$attr" "$i" "$i" "$i" "$i" ;;
            2) printf '%s\npub async fn f%d(id: u64) -> R%d {\n    R%d(vec![id, %d])\n}\n\n' "$attr" "$i" "$i" "$i" "$i" ;;
            esac
            continue
        fi
        case $((i % 3)) in
        0) printf '%s\npub fn f%d(n: u64) -> u64 {\n    n.wrapping_mul(%d)\n}\n\n' "$attr" "$i" "$i" ;;
        1) printf '%s\npub fn f%d(name: &str, n: u32) -> String {\n    format!("{name} {n} %d")\n}\n\n' "$attr" "$i" "$i" ;;
        2) printf '%s\npub async fn f%d(id: u64) -> Vec<u64> {\n    vec![id, %d]\n}\n\n' "$attr" "$i" "$i" ;;
        esac
    done
}

calls() {
    local i field=${distinct:+.0}
    for i in $(seq 0 49); do
        case $((i % 3)) in
        0) printf '    sum += f%d(1)%s as usize;\n' "$i" "$field" ;;
        1) printf '    sum += f%d("x", 2)%s.len();\n' "$i" "$field" ;;
        2) printf '    sum += runtime.block_on(f%d(3))%s.len();\n' "$i" "$field" ;;
        esac
    done
}

crate() { # $1 = name, $2 = attribute line
    mkdir -p "$dir/$1/src"
    cat >"$dir/$1/Cargo.toml" <<EOF
[package]
name = "$1"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
cache-runtime = { path = "$root/cache-runtime" }
tokio = { version = "1", default-features = false, features = ["rt"] }
serde = { version = "1", features = ["derive"] }
EOF
    {
        printf '#![allow(clippy::all)]\n'
        [ -n "$2" ] && printf 'use cache_runtime::cached;\n\n'
        functions "$2"
        printf 'fn main() {\n'
        printf '    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();\n'
        printf '    let mut sum = 0usize;\n'
        calls
        printf '    // Both crates link the runtime.\n'
        printf '    sum += cache_runtime::functions().len();\n'
        printf '    println!("{sum}");\n}\n'
    } >"$dir/$1/src/main.rs"
}

cat >"$dir/Cargo.toml" <<EOF
[workspace]
resolver = "2"
members = ["cached50", "plain50"]
EOF
cp "$root/Cargo.lock" "$dir/Cargo.lock"
crate cached50 '#[cached(ttl = 60)]'
crate plain50 ''

export CARGO_INCREMENTAL=0
(cd "$dir" && cargo build --quiet -p cached50 -p plain50 && ./target/debug/cached50 >/dev/null \
    && ./target/debug/plain50 >/dev/null)

build() { # prints milliseconds
    touch "$dir/$1/src/main.rs"
    local start end
    start=$(date +%s%N)
    (cd "$dir" && cargo build --quiet -p "$1")
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}

cached_ms=()
plain_ms=()
for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then
        c=$(build cached50)
        p=$(build plain50)
    else
        p=$(build plain50)
        c=$(build cached50)
    fi
    cached_ms+=("$c")
    plain_ms+=("$p")
    echo "round $round: 50 #[cached] functions ${c} ms, the same plain ${p} ms"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mc=$(median "${cached_ms[@]}")
mp=$(median "${plain_ms[@]}")
awk -v c="$mc" -v p="$mp" 'BEGIN { printf "medians: %d ms vs %d ms, ratio %.2fx\n", c, p, c / p }'
