from serving.security import origin_allowed


def test_a_browser_socket_is_accepted_from_the_own_or_a_listed_origin_only():
    assert origin_allowed(None, "127.0.0.1:8000", [])  # not a browser
    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000", [])  # the page itself
    assert not origin_allowed("https://evil.example", "127.0.0.1:8000", [])
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8000", [])  # another port
    assert origin_allowed(
        "https://chat.example.com/", "10.0.0.5:8000", ["https://chat.example.com"]
    )
    assert origin_allowed("https://anything.example", "h:1", ["*"])
