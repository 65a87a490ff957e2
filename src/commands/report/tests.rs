use super::*;
use view::csv_row;

#[test]
fn csv_quotes_and_defuses_formulas() {
    assert_eq!(
        csv_row([
            "a".into(),
            "b,c".into(),
            "say \"hi\"".into(),
            "=1+1".into(),
            "-x".into(),
            "".into()
        ]),
        "a,\"b,c\",\"say \"\"hi\"\"\",'=1+1,'-x,\r\n"
    );
}
