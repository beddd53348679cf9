import pytest

from espnet2_ext.utils.registry import Registry


class Base:
    def __init__(self, x=1):
        self.x = x


def test_register_get_build_and_names():
    reg = Registry("thing", base=Base)

    @reg.register("alpha")
    class Alpha(Base):
        pass

    assert reg.get("alpha") is Alpha
    assert reg.build("alpha", {"x": 3}).x == 3
    assert reg.names() == ["alpha"] and "alpha" in reg


def test_guards():
    reg = Registry("thing", base=Base)
    reg.add("a", Base, builtin=True)
    with pytest.raises(ValueError, match="lower-case"):
        reg.add("Upper", Base)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", Base)
    with pytest.raises(TypeError, match="must be a Base"):
        reg.add("b", int)
    with pytest.raises(ValueError, match="built in"):
        reg.remove("a")
    with pytest.raises(ValueError, match=r"unknown thing 'zz'; choose one of \['a'\]"):
        reg.get("zz")
    reg.add("c", Base())  # instances are checked with isinstance
    reg.remove("c")
    assert reg.names() == ["a"]
