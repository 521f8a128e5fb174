package service

import "reflect"

// WithoutLines returns a deep copy of v with the Line of every Pos in it
// set to zero, for comparing settings while ignoring where they were
// written: a reload that only moved a block (an edit above it, a comment)
// changed nothing. Files are kept, since a script's security check
// depends on the file that names it. v itself is not changed; nil slices,
// maps and pointers stay nil, so reflect.DeepEqual on two copies means
// what it does on the originals.
func WithoutLines[T any](v T) T {
	return withoutPos(v, false)
}

// WithoutPositions is WithoutLines that zeroes the files too: for settings
// whose meaning does not depend on the file that holds them, such as a
// health check that moved to an included file.
func WithoutPositions[T any](v T) T {
	return withoutPos(v, true)
}

func withoutPos[T any](v T, files bool) T {
	src := reflect.ValueOf(&v).Elem()
	dst := reflect.New(src.Type()).Elem()
	copyWithoutLines(dst, src, files)
	return dst.Interface().(T)
}

var posType = reflect.TypeFor[Pos]()

// copyWithoutLines copies src into dst, which is settable and zero, and
// zeroes every Pos.Line on the way (and Pos.File, with files).
func copyWithoutLines(dst, src reflect.Value, files bool) {
	switch src.Kind() {
	case reflect.Struct:
		// Unexported fields (netip.Addr's, say) are copied as they are:
		// no Pos hides in them.
		dst.Set(src)
		if src.Type() == posType {
			dst.FieldByName("Line").SetInt(0)
			if files {
				dst.FieldByName("File").SetString("")
			}
			return
		}
		for i := range src.NumField() {
			if src.Type().Field(i).IsExported() {
				copyWithoutLines(dst.Field(i), src.Field(i), files)
			}
		}
	case reflect.Array:
		for i := range src.Len() {
			copyWithoutLines(dst.Index(i), src.Index(i), files)
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		dst.Set(reflect.MakeSlice(src.Type(), src.Len(), src.Len()))
		for i := range src.Len() {
			copyWithoutLines(dst.Index(i), src.Index(i), files)
		}
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		dst.Set(reflect.New(src.Type().Elem()))
		copyWithoutLines(dst.Elem(), src.Elem(), files)
	case reflect.Map:
		if src.IsNil() {
			return
		}
		dst.Set(reflect.MakeMapWithSize(src.Type(), src.Len()))
		for it := src.MapRange(); it.Next(); {
			val := reflect.New(src.Type().Elem()).Elem()
			copyWithoutLines(val, it.Value(), files)
			dst.SetMapIndex(it.Key(), val)
		}
	case reflect.Interface:
		if src.IsNil() {
			return
		}
		val := reflect.New(src.Elem().Type()).Elem()
		copyWithoutLines(val, src.Elem(), files)
		dst.Set(val)
	default:
		dst.Set(src)
	}
}
