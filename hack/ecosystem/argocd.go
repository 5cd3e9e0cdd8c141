package main

import (
	"context"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Health statuses Argo CD accepts from a script; any other is reported as Unknown.
var validHealth = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

// argocdHealth runs a resource health script as Argo CD runs one configured in argocd-cm
// (resource.customizations.health.<group>_<kind>, without useOpenLibs): a fresh gopher-lua state
// with only the package, base and table libraries and a reduced os library, the live object as
// the global `obj`, a one-second limit, and the returned table read as {status, message}.
func argocdHealth(obj *unstructured.Unstructured, script string) (verdict, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage}, // first, as the others register into it
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openTimeOnlyOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return verdict{}, fmt.Errorf("opening %q: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return verdict{}, fmt.Errorf("the health script failed: %w", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return verdict{}, fmt.Errorf("the health script returned %s, not a table", l.Get(-1).Type())
	}
	v := verdict{Status: luaString(ret.RawGetString("status")), Message: luaString(ret.RawGetString("message"))}
	if !validHealth[v.Status] {
		v = verdict{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return v, nil
}

func luaString(v lua.LValue) string {
	if s, ok := v.(lua.LString); ok {
		return string(s)
	}
	return ""
}

// openTimeOnlyOs opens an `os` table with only the clock and date functions: Argo CD replaces
// gopher-lua's os library by a safe one without exit, execute, remove, rename, getenv or tmpname.
func openTimeOnlyOs(l *lua.LState) int {
	full := l.NewTable()
	l.Push(l.NewFunction(lua.OpenOs))
	l.Call(0, 1)
	if t, ok := l.Get(-1).(*lua.LTable); ok {
		full = t
	}
	l.Pop(1)
	safe := l.NewTable()
	for _, name := range []string{"clock", "date", "difftime", "time"} {
		safe.RawSetString(name, full.RawGetString(name))
	}
	l.SetGlobal(lua.OsLibName, safe)
	l.Push(safe)
	return 1
}

// toLua converts decoded JSON (int64 integers, as in unstructured objects) to Lua values the way
// Argo CD hands the live object to a script: maps become tables, lists become arrays from 1,
// numbers become Lua numbers.
func toLua(l *lua.LState, v interface{}) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case int64:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case []interface{}:
		t := l.CreateTable(len(x), 0)
		for _, item := range x {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]interface{}:
		t := l.CreateTable(0, len(x))
		for k, item := range x {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}
