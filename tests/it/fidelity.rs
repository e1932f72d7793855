use crate::common::{compare, restored, TempRepo};

#[test]
fn full_tree_round_trips_entry_by_entry() {
    let t = TempRepo::new();
    let src = t.full_src();
    t.backup(&src);
    let out = t.join("out");
    t.restore("latest", &out);
    compare::assert_same(&src, &restored(&out, &src), compare::Options::default());
}

#[test]
fn subpath_restore_puts_the_directory_contents_in_the_target() {
    let t = TempRepo::new();
    let src = t.full_src();
    t.backup(&src);
    let out = t.join("out");
    t.restore(&format!("latest:{}", src.display()), &out);
    compare::assert_same(
        &src,
        &out,
        compare::Options {
            root_meta: true,
            ..Default::default()
        },
    );
}
