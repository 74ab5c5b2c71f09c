// mimalloc instead of the system allocator: the server and import allocate and free many small
// JSON values from several threads, where glibc malloc spent a quarter of the workers' time
// (measured with perf on bulk import).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    vaidya_server::cli::main()
}
