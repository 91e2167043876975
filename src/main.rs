//! The `itsup` binary: parse the command line and hand over to the library.

// The generator allocates many small values across threads; glibc's malloc spent a fifth of
// a 1000-project run in its arenas (measured with perf), mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    itsup::cli::main()
}
