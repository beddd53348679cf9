import pytest

from espnet2_ext.utils.scp import read_scp


def test_read_scp_keeps_order_and_spaces(tmp_path):
    p = tmp_path / "wav.scp"
    p.write_text("b /x/b c.wav\n\na /x/a.wav\n", encoding="utf-8")
    assert list(read_scp(p).items()) == [("b", "/x/b c.wav"), ("a", "/x/a.wav")]


def test_read_scp_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        read_scp(tmp_path / "none.scp")
    p = tmp_path / "bad.scp"
    p.write_text("a x\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.scp:2: expected"):
        read_scp(p)
    p.write_text("a x\na y\n", encoding="utf-8")
    with pytest.raises(ValueError, match="listed twice"):
        read_scp(p)
