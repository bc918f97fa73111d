def test_server(comfy):
    info = comfy.get("/object_info").json()
    print([k for k in info if "SwinIR" in k])
    print(info["SwinIRModelLoader"])
    assert comfy.get("/").status_code == 200

def test_ui(ui):
    print(ui.page.evaluate("() => Object.keys(LiteGraph.registered_node_types).filter(k => k.includes('SwinIR'))"))
    print(ui.dialogs, ui.errors)
