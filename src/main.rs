//! Command-line entry point: wires the subcommands to the library.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Stores vault-provider credentials (1Password, Doppler, Infisical) from Kubernetes Secrets in
/// AWS SSM Parameter Store, driven by `VaultConnection` resources.
#[derive(Parser)]
#[command(name = "vault-connection-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster in KUBECONFIG or the in-cluster config.
    Run(Box<vault_connection_operator::config::RunArgs>),
    /// Print the VaultConnection CustomResourceDefinition as YAML.
    Crd,
    /// Check VaultConnection manifests (and their Secrets) offline, for CI and GitOps pipelines.
    ///
    /// Prints one line per problem as `file:document-index: field: message` (document index
    /// counts from 0) and never a value; any character a viewer may break a line at (newline,
    /// NEL, U+2028, U+2029) or that is invisible is printed as an escape such as `\u{2028}`.
    /// Exit status: 0 clean, 1 problems found, 2 input that cannot be read or parsed.
    ///
    /// Safe on an untrusted tree: a path given with -f is followed if it is a link, but links
    /// found inside a directory are not (a link named *.yaml/*.yml/*.json, or one to a
    /// directory under -R, is reported as an input error so nothing hides behind it); only
    /// regular files are read (a FIFO or device is an input error); each file and stdin is read
    /// up to --max-file-size bytes.
    Validate {
        /// Files or directories (searched for *.yaml, *.yml, *.json), or `-` for stdin.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<std::path::PathBuf>,
        /// Also read the subdirectories of directories.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Largest file (or stdin) read, in bytes; a larger one is an input error.
        #[arg(long, default_value_t = vault_connection_operator::manifests::DEFAULT_MAX_FILE_BYTES)]
        max_file_size: u64,
        /// Accept Doppler personal (dp.pt.) and CLI (dp.ct.) tokens, as the operator does with
        /// the same flag; refused by default because they carry a person's whole-workspace
        /// access.
        #[arg(long, env = "VCO_ALLOW_DOPPLER_PERSONAL_TOKENS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        allow_doppler_personal_tokens: bool,
        /// KMS keys a connection may name in spec.ssm.kmsKeyId, comma-separated (list the
        /// operator's default key and its --allowed-kms-keys). Not given: any key passes here.
        #[arg(long, value_delimiter = ',')]
        allowed_kms_keys: Option<Vec<String>>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", vault_connection_operator::api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Validate {
            files,
            recursive,
            max_file_size,
            allow_doppler_personal_tokens,
            allowed_kms_keys,
        } => {
            let options = vault_connection_operator::manifests::Options {
                recursive,
                max_file_bytes: max_file_size,
                policy: vault_connection_operator::validation::Policy {
                    allow_doppler_personal_tokens,
                    allowed_kms_keys: allowed_kms_keys.map(|keys| {
                        keys.iter()
                            .map(|k| k.trim())
                            .filter(|k| !k.is_empty())
                            .map(str::to_owned)
                            .collect()
                    }),
                },
            };
            validate(&files, &options)
        }
        Command::Run(args) => run(*args),
    }
}

fn run(args: vault_connection_operator::config::RunArgs) -> ExitCode {
    use vault_connection_operator::run;
    if let Err(e) = args
        .check()
        .and_then(|()| run::init_logging(args.log_format, &args.log_level))
    {
        eprintln!("vault-connection-operator run: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vault-connection-operator run: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator failed");
            ExitCode::FAILURE
        }
    }
}

fn validate(
    files: &[std::path::PathBuf],
    options: &vault_connection_operator::manifests::Options,
) -> ExitCode {
    let report = vault_connection_operator::manifests::validate_paths(files, options);
    for e in &report.input_errors {
        eprintln!("{e}");
    }
    for p in &report.problems {
        println!("{p}");
    }
    eprintln!(
        "checked {} VaultConnection(s): {} problem(s), {} input error(s)",
        report.checked,
        report.problems.len(),
        report.input_errors.len()
    );
    ExitCode::from(report.exit_code())
}
