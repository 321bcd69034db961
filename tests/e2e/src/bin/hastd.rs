//! The `hastd` stand-in's program (see `haven_e2e::hast_standin::hastd`): FreeBSD's hastd
//! cannot run on Linux, so the rig's hosts run this one.

fn main() {
    std::process::exit(haven_e2e::hast_standin::hastd::main());
}
