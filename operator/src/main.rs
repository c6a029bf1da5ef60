fn main() {
    println!("vigil-operator");
}
