//! The `hastctl` stand-in's program (see `haven_e2e::hast_standin::hastctl`): it talks to
//! the `hastd` stand-in the way FreeBSD's hastctl talks to hastd.

fn main() {
    std::process::exit(haven_e2e::hast_standin::hastctl::main());
}
