fn main() -> std::process::ExitCode {
    vaidya_server::cli::main()
}
