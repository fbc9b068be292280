//! The command line: `vipr manager|run`, `vipr status`, `vipr manifest`, `vipr version`.
//! Every setting is a flag of `vipr manager` (and `vipr manifest`), built from the settings
//! table ([`crate::config::keys`]).

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::config::keys::{self, KEYS};
use crate::config::Sources;

/// The whole command line.
pub fn command() -> Command {
    let mut manager = Command::new("manager")
        .visible_alias("run")
        .about("Run the daemon (kube-vip's `manager`)")
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("YAML file with any of the settings below"),
        );
    for k in KEYS {
        manager = manager.args(keys::args(k, false));
    }
    Command::new("vipr")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Highly available virtual IPs over BGP (kube-vip compatible)")
        .subcommand_required(true)
        .subcommand(manager)
        .subcommand(
            Command::new("status")
                .about("Show peers and VIPs of a running daemon")
                .arg(
                    Arg::new("json")
                        .long("json")
                        .action(ArgAction::SetTrue)
                        .help("print the raw JSON"),
                )
                .arg(
                    Arg::new("addr")
                        .long("addr")
                        .default_value("127.0.0.1:2112")
                        .help("the daemon's prometheus_server address"),
                ),
        )
        .subcommand(crate::manifest::command())
        .subcommand(Command::new("version").about("Print the version"))
}

/// Where `vipr manager`'s configuration comes from: its flags and `--config` file.
pub fn sources(m: &ArgMatches) -> Sources {
    Sources {
        flags: keys::given(m),
        file: m.get_one::<String>("config").map(Into::into),
    }
}
