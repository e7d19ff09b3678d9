//! The glycin loader executable for .gsi files: glycin starts it (in its sandbox) and talks to
//! it over the D-Bus connection it passes with `--dbus-fd`.

use glycin_gsimg::GsiLoader;
use glycin_utils::*;

init_main_loader!(GsiLoader);
