//! Runs one simulation and prints a summary.
//!
//! ```text
//! cargo run --release -p peerpool-sim -- --nodes 1000 --minutes 30 --seed 1
//! ```
//! Options (all optional): `--nodes N`, `--seeds N` (bootstrap nodes), `--groups N` (/16s),
//! `--minutes M` (virtual time), `--seed S` (else `PEERPOOL_SIM_SEED`, else fresh),
//! `--target N` (outbound target), `--loss P`, `--dial-loss P`, `--churn UP,DOWN` (mean
//! minutes online and offline), `--crash P` (share of departures that are crashes),
//! `--link-failure MINUTES` (mean connection lifetime), `--join MINUTES` (nodes first come up
//! spread over this window; default 1), `--bad N` (misbehaving nodes),
//! `--partition SHARE,FROM,UNTIL` (share of nodes cut off, from and until, in minutes),
//! `--horizon SECONDS` (a session this long that never reached the target counts as a miss),
//! `--every MINUTES` (also print a line at this interval).

use std::process::ExitCode;
use std::time::Duration;

use peerpool_sim::report::summary;
use peerpool_sim::{seed, Churn, Partition, Sim, SimConfig};

struct Args {
    config: SimConfig,
    minutes: f64,
    seed: Option<u64>,
    horizon: Duration,
    every: Option<f64>,
}

fn minutes(m: f64) -> Duration {
    Duration::from_secs_f64(m * 60.0)
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut config = SimConfig::new(500);
    let mut nodes_set = None;
    let mut groups_set = None;
    let mut minutes_run = 30.0;
    let mut seed_arg = None;
    let mut horizon = Duration::from_secs(300);
    let mut every = None;
    let mut partition: Option<(f64, f64, f64)> = None;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<f64>().map_err(|_| format!("bad number {v:?}"));
        match flag.as_str() {
            "--nodes" => nodes_set = Some(num(value()?)? as usize),
            "--seeds" => config.seeds = num(value()?)? as usize,
            "--groups" => groups_set = Some(num(value()?)? as usize),
            "--minutes" => minutes_run = num(value()?)?,
            "--seed" => {
                let v = value()?;
                seed_arg = Some(seed::parse(&v).ok_or_else(|| format!("bad seed {v:?}"))?);
            }
            "--target" => config.pool.connman.target_outbound = num(value()?)? as usize,
            "--loss" => config.loss = num(value()?)?,
            "--dial-loss" => config.dial_loss = num(value()?)?,
            "--churn" => {
                let v = value()?;
                let (up, down) = v.split_once(',').ok_or("--churn UP,DOWN")?;
                config.churn = Some(Churn {
                    mean_up: minutes(num(up.into())?),
                    mean_down: minutes(num(down.into())?),
                    crash_share: config.churn.as_ref().map_or(0.5, |c| c.crash_share),
                });
            }
            "--crash" => {
                let share = num(value()?)?;
                if let Some(c) = config.churn.as_mut() {
                    c.crash_share = share;
                } else {
                    return Err("--crash comes after --churn".into());
                }
            }
            "--link-failure" => config.link_failure_mean = Some(minutes(num(value()?)?)),
            "--join" => config.join_window = minutes(num(value()?)?),
            "--bad" => config.misbehaving = num(value()?)? as usize,
            "--partition" => {
                let v = value()?;
                let parts: Vec<&str> = v.split(',').collect();
                let [share, from, until] = parts[..] else {
                    return Err("--partition SHARE,FROM,UNTIL".into());
                };
                partition = Some((num(share.into())?, num(from.into())?, num(until.into())?));
            }
            "--horizon" => horizon = Duration::from_secs_f64(num(value()?)?),
            "--every" => every = Some(num(value()?)?),
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if let Some(n) = nodes_set {
        let template = SimConfig::new(n);
        config.nodes = n;
        config.seeds = config.seeds.min(n);
        config.groups = template.groups;
    }
    if let Some(g) = groups_set {
        config.groups = g;
    }
    if let Some((share, from, until)) = partition {
        let cut = ((config.nodes as f64) * share) as usize;
        // The last nodes: some bootstrap nodes stay on the other side (they are the first).
        config.partitions.push(Partition {
            side: (config.nodes - cut.min(config.nodes)..config.nodes).collect(),
            from: minutes(from),
            until: minutes(until),
        });
    }
    Ok(Args {
        config,
        minutes: minutes_run,
        seed: seed_arg,
        horizon,
        every,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("peerpool-sim: {e}");
            }
            eprintln!("usage: peerpool-sim [--nodes N] [--minutes M] [--seed S] ... (see the source's docs)");
            return ExitCode::from(2);
        }
    };
    let seed = args.seed.unwrap_or_else(|| seed::seed_for("peerpool-sim"));
    let mut sim = Sim::new(args.config, seed);
    let total = minutes(args.minutes);
    if let Some(step) = args.every.map(minutes) {
        while sim.elapsed() + step < total {
            sim.run_for(step);
            let online = (0..sim.node_count()).filter(|&n| sim.is_online(n)).count();
            let target = sim.config().target_outbound();
            let full = (0..sim.node_count())
                .filter(|&n| sim.is_online(n) && sim.ready_outbound(n) >= target)
                .count();
            println!(
                "t={:>6.0}s online={online} at-target={full} links={} components={}",
                sim.elapsed().as_secs_f64(),
                sim.links().len(),
                sim.components().len()
            );
        }
    }
    sim.run_until(total);
    print!("{}", summary(&sim, args.horizon));
    for v in sim.violations() {
        println!("violation: {v}");
    }
    if sim.violation_count() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
