//! Reading option objects and building result objects, with errors that name the field.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

/// What a JavaScript value is, for error messages (`typeof`, with `null` and arrays told apart).
pub(crate) fn describe(value: &JsValue) -> String {
    if value.is_null() {
        String::from("null")
    } else if Array::is_array(value) {
        String::from("an array")
    } else if let Some(text) = value.as_string() {
        format!("{text:?}")
    } else {
        value.js_typeof().as_string().unwrap_or_default()
    }
}

/// An option object: `undefined`/`null` reads as empty when `optional`.
pub(crate) fn options_object(value: &JsValue, optional: bool) -> Result<Option<Object>, String> {
    if optional && value.is_undefined() {
        return Ok(None);
    }
    if value.is_object() && !Array::is_array(value) {
        return Ok(Some(value.clone().unchecked_into()));
    }
    Err(format!(
        "options: expected an object, got {}",
        describe(value)
    ))
}

/// `object[name]`, `None` when absent (`undefined` or `null`).
fn field(object: Option<&Object>, name: &str) -> Result<Option<JsValue>, String> {
    let Some(object) = object else {
        return Ok(None);
    };
    let value = Reflect::get(object, &JsValue::from_str(name))
        .map_err(|e| format!("{name}: {}", error_text(&e)))?;
    Ok((!value.is_undefined() && !value.is_null()).then_some(value))
}

/// An optional string option.
pub(crate) fn optional_string(
    object: Option<&Object>,
    name: &str,
) -> Result<Option<String>, String> {
    field(object, name)?
        .map(|value| {
            value
                .as_string()
                .ok_or_else(|| format!("{name}: expected a string, got {}", describe(&value)))
        })
        .transpose()
}

/// A string option kept raw, for messages that show the wrong value (`keyType`).
pub(crate) fn raw_field(object: Option<&Object>, name: &str) -> Result<Option<JsValue>, String> {
    field(object, name)
}

/// An optional array-of-strings option; absent reads as empty.
pub(crate) fn optional_strings(object: Option<&Object>, name: &str) -> Result<Vec<String>, String> {
    let Some(value) = field(object, name)? else {
        return Ok(Vec::new());
    };
    let array: Array = value
        .dyn_into()
        .map_err(|v| format!("{name}: expected an array of strings, got {}", describe(&v)))?;
    array
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_string()
                .ok_or_else(|| format!("{name}[{i}]: expected a string, got {}", describe(&item)))
        })
        .collect()
}

/// A plain object with these properties.
pub(crate) fn object(properties: &[(&str, JsValue)]) -> Result<Object, String> {
    let object = Object::new();
    for (name, value) in properties {
        Reflect::set(&object, &JsValue::from_str(name), value)
            .map_err(|e| format!("setting {name}: {}", error_text(&e)))?;
    }
    Ok(object)
}

/// The message of a thrown JavaScript value (`Error.message`, or the value itself).
pub(crate) fn error_text(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        let name = error.name().as_string().unwrap_or_default();
        let message = error.message().as_string().unwrap_or_default();
        format!("{name}: {message}")
    } else if let Some(text) = value.as_string() {
        text
    } else {
        describe(value)
    }
}
