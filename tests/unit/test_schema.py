"""A job's CSV against the columns its service's scorer declares."""
import io

import pandas as pd
import pytest

from samples import census
from shared import schema, swagger

COLUMNS = {"age": "integer", "hours-per-week": "number", "occupation": "string"}


def frame(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text))


def test_a_declaration_is_a_dict_of_known_types():
    def scorer(frame, parameters):
        return frame
    assert schema.declared(scorer) is None  # a scorer may declare nothing
    scorer.input_columns = COLUMNS
    assert schema.declared(scorer) == COLUMNS
    for bad, says in (({}, "non-empty"), ([("age", "integer")], "dict"), ({"age": "int"}, "types are"),
                      ({"": "string"}, "non-empty strings")):
        scorer.input_columns = bad
        with pytest.raises(ValueError, match=says):
            schema.declared(scorer)
    assert schema.declared(census.score)["age"] == "integer"


def test_the_header_must_name_every_declared_column_and_may_have_more():
    assert schema.header_problem(["age", "hours-per-week", "occupation", "extra"], COLUMNS) is None
    problem = schema.header_problem(["hello world"], COLUMNS)
    assert problem.startswith("the input lacks the column(s) age, hours-per-week, occupation")
    assert "its header has hello world" in problem


def test_the_first_bad_value_is_named_by_its_row_in_the_input_and_its_column():
    good = frame("age,hours-per-week,occupation\n39,40.5,Sales\n,38,\n50,40,Tech\n")
    assert schema.value_problem(good, COLUMNS, 1) is None  # an empty cell is a missing value
    bad = frame("age,hours-per-week,occupation\n39,40,Sales\n41,forty,Sales\nthirty,40,Sales\n")
    assert schema.value_problem(bad, COLUMNS, 201) == \
        "row 202, column hours-per-week: 'forty' is not a number, as the service declares hours-per-week"
    fraction = frame("age,hours-per-week,occupation\n39.5,40,Sales\n")
    assert "row 7, column age: '39.5' is not an integer" in schema.value_problem(fraction, COLUMNS, 7)


def test_a_row_with_too_many_fields_is_named_in_the_inputs_rows():
    message = "Error tokenizing data. C error: Expected 15 fields in line 11, saw 18\n"
    assert schema.parser_problem(message, 401) == "row 410 has 18 fields where the header has 15"
    assert schema.parser_problem("something else\nlast line", 1) == "last line"


def test_swagger_publishes_the_declared_columns():
    class Service:
        name, service_id, kind, billing_plan_id = "census", "census", "New", "plan"
    published = swagger.bes_swagger(Service, "https://h/api/subscriptions/s/services/census", COLUMNS)
    row = published["definitions"]["InputRow"]
    assert row["required"] == list(COLUMNS) and row["properties"]["age"] == {"type": "integer", "format": "int64"}
    assert "declares no input" in swagger.bes_swagger(Service, "https://h/x")["definitions"]["InputRow"]["description"]


def test_the_sample_generator_writes_input_the_sample_service_accepts(tmp_path):
    out = tmp_path / "adult.csv"
    assert census.main(["--rows", "30", "--seed", "3", "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert len(written) == 30 and out.read_text() == "".join(census.generate_csv(30, seed=3))
    expected = schema.declared(census.score)
    assert schema.header_problem(list(written.columns), expected) is None
    assert schema.value_problem(written, expected, 1) is None
